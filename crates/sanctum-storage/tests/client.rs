//! `create_storage_client`: development defaults, production refusals, custom adapters.

use std::sync::Arc;

use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::config::ConfigReport;
use sanctum_storage::crypto::{KeyError, KeyProvider, MemoryKeyProvider, WrappedKey};
use sanctum_storage::facade::{GetOptions, PutOptions};
use sanctum_storage::observability::audit::MemoryAuditSink;
use sanctum_storage::{
    ErrorCode, StorageConfig, StorageContext, StorageDependencies, create_storage_client,
};

const NO_ENV: [(&str, &str); 0] = [];

/// The embedded default (a folder and development keys) in `home`.
async fn embedded(home: &std::path::Path) -> sanctum_storage::Storage {
    create_storage_client(
        StorageConfig::embedded(home),
        StorageDependencies::default(),
    )
    .await
    .unwrap()
}

/// A key provider that claims to be fit for production (to test the production path without
/// a KMS): it delegates everything to a memory provider.
#[derive(Debug)]
struct ProductionLike(MemoryKeyProvider);

#[async_trait::async_trait]
impl KeyProvider for ProductionLike {
    fn kind(&self) -> &'static str {
        "production-like"
    }
    fn is_development(&self) -> bool {
        false
    }
    async fn wrap(&self, t: &str, k: &[u8; 32], aad: &[u8]) -> Result<WrappedKey, KeyError> {
        self.0.wrap(t, k, aad).await
    }
    async fn unwrap(
        &self,
        t: &str,
        w: &WrappedKey,
        aad: &[u8],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, KeyError> {
        self.0.unwrap(t, w, aad).await
    }
    async fn rewrap(&self, t: &str, w: &WrappedKey, aad: &[u8]) -> Result<WrappedKey, KeyError> {
        self.0.rewrap(t, w, aad).await
    }
    async fn rotate(&self, t: &str) -> Result<u32, KeyError> {
        self.0.rotate(t).await
    }
    async fn destroy(&self, t: &str) -> Result<(), KeyError> {
        self.0.destroy(t).await
    }
    async fn health_check(&self) -> Result<(), KeyError> {
        self.0.health_check().await
    }
}

#[tokio::test]
async fn embedded_default_stores_in_the_home_folder() {
    let home = tempfile::tempdir().unwrap();
    let storage = embedded(home.path()).await;
    let ctx = StorageContext::new("default", "local").unwrap();
    storage
        .blobs()
        .put_bytes(&ctx, "docs", "a.txt", "hello", PutOptions::default())
        .await
        .unwrap();
    assert!(home.path().join("blobs/objects/t/default/n/docs").is_dir());
    let health = storage.health().await;
    assert!(health.blob_ok && health.keys_ok && health.ok());
    assert_eq!(health.key_provider_kind, "local-keyring");
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
    // The log-only audit sink is a development default; a JSON-lines file is accepted.
    config.audit.sink = sanctum_storage::config::AuditSinkKind::Log;
    let err = create_storage_client(config.clone(), StorageDependencies::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    let report = std::error::Error::source(&err)
        .unwrap()
        .downcast_ref::<ConfigReport>()
        .unwrap();
    let paths: Vec<&str> = report.problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["keys.provider", "policy.superusers", "audit.sink"]);
    // The embedded default's `local` superuser is for a single user's development store.
    config.policy.superusers.clear();
    let mut with_file = config.clone();
    with_file.audit.sink = sanctum_storage::config::AuditSinkKind::Jsonl;
    let err = create_storage_client(with_file, StorageDependencies::default())
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("audit"), "{err}");
    // A development key provider injected by the application is refused too.
    let dev_keys = StorageDependencies {
        audit_sink: Some(Arc::new(MemoryAuditSink::default())),
        key_provider: Some(Arc::new(MemoryKeyProvider::new())),
        ..Default::default()
    };
    let err = create_storage_client(config.clone(), dev_keys)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("dependencies.key_provider"),
        "{err}"
    );
    let deps = StorageDependencies {
        audit_sink: Some(Arc::new(MemoryAuditSink::default())),
        key_provider: Some(Arc::new(ProductionLike(MemoryKeyProvider::new()))),
        ..Default::default()
    };
    create_storage_client(config.clone(), deps.clone())
        .await
        .expect("production with every dependency supplied");
    let volatile = StorageDependencies {
        blob_adapter: Some(Arc::new(ObjectStoreAdapter::in_memory("volatile"))),
        ..deps
    };
    let err = create_storage_client(config, volatile).await.unwrap_err();
    assert!(
        err.to_string().contains("dependencies.blob_adapter"),
        "{err}"
    );
}

#[tokio::test]
async fn custom_adapters_plug_in_through_dependencies() {
    let adapter = Arc::new(ObjectStoreAdapter::in_memory("custom"));
    let deps = StorageDependencies {
        blob_adapter: Some(adapter.clone()),
        key_provider: Some(Arc::new(MemoryKeyProvider::new())),
        ..Default::default()
    };
    let config = StorageConfig::from_toml_str(
        "[blob]\nroot = \"/unused\"\n[policy]\nsuperusers = [\"svc\"]",
        NO_ENV,
    )
    .unwrap();
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
    let config = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"svc\"]",
        NO_ENV,
    )
    .unwrap();
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

/// Finds the body file of body `body_id` under a local sanctum home.
fn body_file(home: &std::path::Path, body_id: &str) -> std::path::PathBuf {
    let mut stack = vec![home.join("blobs/objects")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.path().to_string_lossy().contains(body_id) {
                return e.path();
            }
        }
    }
    panic!("no body file for {body_id}");
}

/// A flipped byte anywhere in a stored body fails the read with an `Encryption` error and
/// releases no plaintext of its chunk: on the streaming path (200 kB) and on the path that
/// reads large bodies in parallel runs opened in place (1 MiB and more), in the first run and
/// in the last.
#[tokio::test]
async fn tampered_bodies_fail_with_an_encryption_error() {
    let home = tempfile::tempdir().unwrap();
    let storage = embedded(home.path()).await;
    let ctx = StorageContext::new("t1", "local").unwrap();
    // (body size, offset of the flipped byte from the end of the file; None = in chunk 2)
    for (size, from_end) in [
        (200_000usize, Some(1usize)),
        ((1 << 20) + 5, Some(1)),
        ((1 << 20) + 5, None),
        (3 << 20, Some(20_000)),
    ] {
        let key = format!("k{size}-{from_end:?}");
        let body = sanctum_storage::conformance::pattern(size, size as u64);
        let v = storage
            .blobs()
            .put_bytes(&ctx, "ns", &key, body.clone(), PutOptions::default())
            .await
            .unwrap();
        let path = body_file(home.path(), v.body_id.as_deref().unwrap());
        let mut bytes = std::fs::read(&path).unwrap();
        let at = match from_end {
            Some(n) => bytes.len() - n,
            None => 2 * sanctum_crypto::ENCRYPTED_CHUNK_SIZE + 500,
        };
        bytes[at] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let mut read = storage
            .blobs()
            .get(&ctx, "ns", &key, GetOptions::default())
            .await
            .unwrap();
        let mut released = Vec::new();
        let err = loop {
            use futures::StreamExt;
            match read.body.next().await {
                Some(Ok(chunk)) => released.extend_from_slice(&chunk),
                Some(Err(e)) => break e,
                None => panic!("{key}: a tampered body must not end cleanly"),
            }
        };
        assert_eq!(err.code(), ErrorCode::Encryption, "{key}");
        assert_eq!(err.operation(), Some("blob.get"));
        assert!(
            released.len() < body.len() && body.starts_with(&released),
            "{key}: only verified plaintext before the tampered chunk was released"
        );
        // A range away from the tampered chunk still reads.
        let first = GetOptions {
            range: Some("0-99".parse().unwrap()),
            ..Default::default()
        };
        if from_end.is_some() {
            let (_, got) = storage
                .blobs()
                .get_bytes(&ctx, "ns", &key, first)
                .await
                .unwrap();
            assert_eq!(&got[..], &body[..100]);
        }
    }
}

/// A body file cut short, or swapped for another body's, is refused on the parallel path too.
#[tokio::test]
async fn truncated_and_swapped_large_bodies_are_refused() {
    let home = tempfile::tempdir().unwrap();
    let storage = embedded(home.path()).await;
    let ctx = StorageContext::new("t1", "local").unwrap();
    let body = sanctum_storage::conformance::pattern(1 << 20, 1);
    let mut files = Vec::new();
    for key in ["a", "b", "c"] {
        let v = storage
            .blobs()
            .put_bytes(&ctx, "ns", key, body.clone(), PutOptions::default())
            .await
            .unwrap();
        files.push(body_file(home.path(), v.body_id.as_deref().unwrap()));
    }
    // "a": its final chunk cut off (the size no longer matches the version's).
    let bytes = std::fs::read(&files[0]).unwrap();
    std::fs::write(&files[0], &bytes[..bytes.len() - 16]).unwrap();
    // "b": replaced by "c"'s body (same size, other body id, so another message key).
    std::fs::copy(&files[2], &files[1]).unwrap();
    for (key, code) in [("a", ErrorCode::Consistency), ("b", ErrorCode::Encryption)] {
        let got = storage
            .blobs()
            .get_bytes(&ctx, "ns", key, GetOptions::default())
            .await;
        assert_eq!(got.unwrap_err().code(), code, "{key}");
    }
    let (_, c) = storage
        .blobs()
        .get_bytes(&ctx, "ns", "c", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(c, body);
}

#[tokio::test]
async fn verify_checksum_rehashes_full_reads() {
    let config = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"svc\"]",
        NO_ENV,
    )
    .unwrap();
    let storage = create_storage_client(config, StorageDependencies::default())
        .await
        .unwrap();
    let ctx = StorageContext::new("t1", "svc").unwrap();
    let body = vec![3u8; 300_000];
    storage
        .blobs()
        .put_bytes(&ctx, "ns", "k", body.clone(), PutOptions::default())
        .await
        .unwrap();
    let verify = GetOptions {
        verify_checksum: true,
        ..Default::default()
    };
    let (v, got) = storage
        .blobs()
        .get_bytes(&ctx, "ns", "k", verify)
        .await
        .unwrap();
    assert_eq!(got, body);
    assert_eq!(
        v.checksum,
        format!("blake3:{}", blake3::hash(&body).to_hex())
    );
}

#[tokio::test]
async fn audit_is_lazy_unless_required() {
    use sanctum_storage::config::Environment;
    let home = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::embedded(home.path());
    assert!(!config.audit_required(), "development default");
    config.environment = Environment::Production;
    assert!(config.audit_required(), "production default");
    let config = StorageConfig::embedded(home.path())
        .with_env_overrides([("SANCTUM_AUDIT__REQUIRED", "true")])
        .unwrap();
    assert_eq!(config.audit.required, Some(true));

    // Not required: the file is opened on the first event, and events that cannot be appended
    // are dropped and reported.
    let audit = home.path().join("audit.jsonl");
    let storage = embedded(home.path()).await;
    assert!(!audit.exists(), "opened before any event");
    let ctx = StorageContext::new("default", "local").unwrap();
    storage
        .blobs()
        .put_bytes(&ctx, "docs", "k", "v", PutOptions::default())
        .await
        .unwrap();
    assert!(audit.exists());
    assert_eq!(storage.audit_dropped(), None);

    let blocked = home.path().join("not-a-folder");
    std::fs::write(&blocked, b"").unwrap();
    let mut config = StorageConfig::embedded(home.path());
    config.audit.path = Some(blocked.join("audit.jsonl"));
    let storage = create_storage_client(config.clone(), StorageDependencies::default())
        .await
        .unwrap();
    storage
        .blobs()
        .get_bytes(&ctx, "docs", "k", GetOptions::default())
        .await
        .unwrap();
    let dropped = storage.audit_dropped().unwrap();
    assert_eq!(dropped.events, 1);
    assert!(
        dropped.reason.starts_with("cannot append to "),
        "{dropped:?}"
    );

    // Required: the client fails closed.
    config.audit.required = Some(true);
    let err = create_storage_client(config, StorageDependencies::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(err.to_string().contains("audit.path"), "{err}");
}

#[tokio::test]
async fn sweep_removes_what_killed_writers_left() {
    let home = tempfile::tempdir().unwrap();
    let storage = embedded(home.path()).await;
    let ctx = StorageContext::new("default", "local").unwrap();
    storage
        .blobs()
        .put_bytes(&ctx, "docs", "k", "v", PutOptions::default())
        .await
        .unwrap();
    let objects = home.path().join("blobs/objects");
    let planted = [
        objects.join("t/default/n/docs/h/.01aaaaaaaaaaaaaaaaaaaaaaaa.tmp"),
        objects.join("k/default/.01aaaaaaaaaaaaaaaaaaaaaaaa.tmp"),
        objects.join("k/default/n/.01aaaaaaaaaaaaaaaaaaaaaaaa.tmp"),
        // Another tenant's leftovers are not this sweep's business.
        objects.join("t/other/n/docs/h/.01aaaaaaaaaaaaaaaaaaaaaaaa.tmp"),
        objects.join("k/other/.01aaaaaaaaaaaaaaaaaaaaaaaa.tmp"),
    ];
    for path in &planted {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"partial").unwrap();
    }
    let keyring_tmp = home.path().join(".keyring.json.tmp-1-00");
    std::fs::write(&keyring_tmp, b"{").unwrap();

    let hour = std::time::Duration::from_secs(3600);
    let report = storage.blobs().sweep(&ctx, "docs", hour).await.unwrap();
    assert_eq!(report.temp_files_deleted, 0, "young leftovers stay");
    let report = storage
        .blobs()
        .sweep(&ctx, "docs", std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.temp_files_deleted, 3, "{report:?}");
    assert_eq!(report.bytes_deleted, 3 * 7, "{report:?}");
    assert!(planted[..3].iter().all(|p| !p.exists()));
    assert!(planted[3..].iter().all(|p| p.exists()));
    let keyring = storage
        .sweep_keyring_leftovers(std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!((keyring.files, keyring.bytes), (1, 1));
    assert!(!keyring_tmp.exists());
    let (_, body) = storage
        .blobs()
        .get_bytes(&ctx, "docs", "k", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(&body[..], b"v");
}

/// A config file that names only `blob.root`: the local provider's default keyring.
fn rooted_config(root: &std::path::Path, keyring: Option<&std::path::Path>) -> StorageConfig {
    let mut text = format!(
        "[blob]\nroot = {}\n[policy]\nsuperusers = [\"local\"]\n",
        serde_json::to_string(root.to_str().unwrap()).unwrap()
    );
    if let Some(keyring) = keyring {
        text.push_str(&format!(
            "[keys]\nkeyring = {}\n",
            serde_json::to_string(keyring.to_str().unwrap()).unwrap()
        ));
    }
    StorageConfig::from_toml_str(&text, NO_ENV).unwrap()
}

/// The default keyring of a store built from a config file lives beside the data folder
/// (`<blob.root>.keys/keyring.json`), not in it. A keyring at the old default (inside the data
/// folder) moves there once, when a client is created, and still opens the data; a keyring at
/// both places is refused, naming both, and neither is touched.
#[tokio::test]
async fn the_default_keyring_moves_out_of_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let old = root.join("keyring.json");
    let new = dir.path().join("data.keys/keyring.json");
    let config = rooted_config(&root, None);
    assert_eq!(config.keyring_path().as_deref(), Some(new.as_path()));
    let ctx = StorageContext::new("default", "local").unwrap();
    let storage = create_storage_client(config.clone(), StorageDependencies::default())
        .await
        .unwrap();
    storage
        .blobs()
        .put_bytes(&ctx, "docs", "a.txt", "hello", PutOptions::default())
        .await
        .unwrap();
    storage.close().await.unwrap();
    assert!(new.is_file() && !old.exists());
    let first_keyring = std::fs::read(&new).unwrap();

    // An old layout: the keyring inside the data folder, nothing beside it.
    std::fs::rename(&new, &old).unwrap();
    std::fs::remove_dir_all(new.parent().unwrap()).unwrap();
    let storage = create_storage_client(config.clone(), StorageDependencies::default())
        .await
        .unwrap();
    assert!(new.is_file() && !old.exists(), "moved at client creation");
    assert!(!root.join("keyring.json.lock").exists());
    let (_, body) = storage
        .blobs()
        .get_bytes(&ctx, "docs", "a.txt", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(&body[..], b"hello");
    // Another tenant's first write adds a KEK to the moved keyring.
    let other = StorageContext::new("other", "local").unwrap();
    storage
        .blobs()
        .put_bytes(&other, "docs", "b.txt", "more", PutOptions::default())
        .await
        .unwrap();
    storage.close().await.unwrap();
    let second_keyring = std::fs::read(&new).unwrap();
    assert_ne!(first_keyring, second_keyring);

    // Two different keyrings, at the old and the new default: refused, naming both.
    std::fs::write(&old, &first_keyring).unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = create_storage_client(config.clone(), StorageDependencies::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config, "{err}");
    let text = err.to_string();
    assert!(text.contains(old.to_str().unwrap()), "{text}");
    assert!(text.contains(new.to_str().unwrap()), "{text}");
    assert_eq!(std::fs::read(&old).unwrap(), first_keyring);
    assert_eq!(std::fs::read(&new).unwrap(), second_keyring);
}

/// A keyring path set in the config is used where it is, even inside the data folder.
#[tokio::test]
async fn an_explicit_keyring_path_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let keyring = root.join("keyring.json");
    let config = rooted_config(&root, Some(&keyring));
    assert_eq!(config.keyring_path().as_deref(), Some(keyring.as_path()));
    let ctx = StorageContext::new("default", "local").unwrap();
    for _ in 0..2 {
        let storage = create_storage_client(config.clone(), StorageDependencies::default())
            .await
            .unwrap();
        storage
            .blobs()
            .put_bytes(&ctx, "docs", "a.txt", "hello", PutOptions::default())
            .await
            .unwrap();
        storage.close().await.unwrap();
        assert!(keyring.is_file());
        assert!(!dir.path().join("data.keys").exists());
    }
}

/// Where the default keyring goes for various `blob.root`s; none without a last folder name.
#[test]
fn the_default_keyring_sits_beside_the_data_folder() {
    let at = |root: &str| {
        let mut config = StorageConfig::default();
        config.blob.root = Some(root.into());
        config.keyring_path()
    };
    let some = |p: &str| Some(std::path::PathBuf::from(p));
    assert_eq!(at("/srv/data"), some("/srv/data.keys/keyring.json"));
    assert_eq!(at("/srv/data/"), some("/srv/data.keys/keyring.json"));
    assert_eq!(at("/data"), some("/data.keys/keyring.json"));
    assert_eq!(at("data"), some("data.keys/keyring.json"));
    assert_eq!(at("./a/b"), some("./a/b.keys/keyring.json"));
    assert_eq!(at("/"), None);
    assert_eq!(at(".."), None);
    let mut config = StorageConfig::default();
    config.blob.root = Some("/".into());
    let err = config.validate().unwrap_err();
    assert!(err.to_string().contains("keys.keyring"), "{err}");
}
