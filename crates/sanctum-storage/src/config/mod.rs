//! Configuration: [`StorageConfig`] from a TOML file plus `SANCTUM_<SECTION>__<KEY>` environment
//! overrides, validated up front; and [`create_storage_client`] with [`StorageDependencies`].
//!
//! Every problem is reported at once: unknown keys (typos) and each validation failure, each
//! with its path, in one `Config` error whose source is a [`ConfigReport`].

mod client;
mod load;

pub use client::{StorageDependencies, create_storage_client};
pub use load::{ConfigProblem, ConfigReport, HOME_CONFIG_FILE};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::adapters::local::Durability;
use crate::error::{Error, Result};

/// Where the client runs. In `production` the development defaults are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// Development defaults are allowed (in-memory backend, `os` durability, log-only audit).
    #[default]
    Development,
    /// Every dependency must be supplied and durable.
    Production,
}

/// Which blob backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlobBackend {
    /// A local folder (`blob.root`): the embedded default.
    #[default]
    Local,
    /// Process memory; everything is lost on exit.
    Memory,
    /// Amazon S3 or an S3-compatible server (feature `s3`).
    S3,
    /// Google Cloud Storage (feature `gcs`).
    Gcs,
    /// Azure Blob Storage (feature `azure`).
    Azure,
}

impl BlobBackend {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Memory => "memory",
            Self::S3 => "s3",
            Self::Gcs => "gcs",
            Self::Azure => "azure",
        }
    }

    /// Whether this is an object store reached over HTTP (S3, GCS or Azure).
    pub fn is_cloud(self) -> bool {
        matches!(self, Self::S3 | Self::Gcs | Self::Azure)
    }

    /// Whether this build includes the backend (cloud backends need their cargo feature).
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Local | Self::Memory => true,
            Self::S3 => cfg!(feature = "s3"),
            Self::Gcs => cfg!(feature = "gcs"),
            Self::Azure => cfg!(feature = "azure"),
        }
    }
}

/// The `[blob]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlobConfig {
    /// The backend.
    pub backend: BlobBackend,
    /// The folder of the local backend.
    pub root: Option<PathBuf>,
    /// When a local write counts as done.
    pub durability: Durability,
    /// Bodies up to this many bytes are inlined in the head manifest (0 to 1 MiB).
    pub inline_threshold: u64,
    /// The adapter's name in spans and the registry.
    pub adapter_name: String,
    /// The bucket (`s3`, `gcs`) or container (`azure`). Default: the backend's environment
    /// variable (`AWS_BUCKET`, `GOOGLE_BUCKET`, `AZURE_CONTAINER_NAME`).
    pub bucket: Option<String>,
    /// A folder inside the bucket that holds everything (lower-case path segments), so several
    /// deployments or tests can share one bucket.
    pub prefix: Option<String>,
    /// The S3 region (default: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// The endpoint URL of an S3-compatible server (MinIO, Ceph, R2, an emulator); default:
    /// AWS, or `AWS_ENDPOINT`.
    pub endpoint: Option<String>,
    /// Allow plain `http://` endpoints (emulators and tests; refused in production).
    pub allow_http: Option<bool>,
    /// Path-style requests (`endpoint/bucket/key`, what most S3-compatible servers want)
    /// rather than virtual-hosted ones (`bucket.endpoint/key`).
    pub path_style: Option<bool>,
    /// The S3 access key id (default: `AWS_ACCESS_KEY_ID`, then the usual AWS sources).
    pub access_key_id: Option<String>,
    /// The name of the environment variable holding the secret (the S3 secret access key or
    /// the Azure account key); the secret itself never goes in a file. Default: the backend's
    /// own variables (`AWS_SECRET_ACCESS_KEY`, `AZURE_STORAGE_ACCOUNT_KEY`).
    pub secret_env: Option<String>,
    /// Send unsigned requests and look up no credentials (public buckets, and servers that
    /// need no signature).
    pub anonymous: bool,
    /// The Azure storage account (default: `AZURE_STORAGE_ACCOUNT_NAME`).
    pub account: Option<String>,
    /// Azure: talk to the Azurite emulator with its published development account (tests only;
    /// refused in production).
    pub use_emulator: bool,
    /// GCS: the service-account key file (default: `GOOGLE_SERVICE_ACCOUNT`).
    pub service_account_path: Option<PathBuf>,
    /// How often object_store retries one request after a transient failure (5xx, 429,
    /// connection errors, timeouts of idempotent requests), with exponential backoff. This is
    /// the only retry layer for cloud backends; 0 turns it off.
    pub max_retries: usize,
    /// No retry starts later than this many milliseconds after a request's first try.
    pub retry_timeout_ms: u64,
    /// Timeout of one HTTP request, in milliseconds.
    pub request_timeout_ms: u64,
    /// Timeout of establishing a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Multipart part size in bytes (rounded down to whole sealed chunks; at least 5 MiB).
    pub part_size: u64,
    /// Parts of one multipart upload in flight at once.
    pub part_concurrency: usize,
    /// At admission, prove that the store honours conditional writes (two creates of a probe
    /// object, the second of which must fail; three requests). A store that ignores them would
    /// let concurrent writers overwrite each other's versions, so the default is on.
    pub check_conditional_writes: bool,
}

impl Default for BlobConfig {
    fn default() -> Self {
        Self {
            backend: BlobBackend::Local,
            root: None,
            durability: Durability::Fsync,
            inline_threshold: 64 * 1024,
            adapter_name: "default".to_string(),
            bucket: None,
            prefix: None,
            region: None,
            endpoint: None,
            allow_http: None,
            path_style: None,
            access_key_id: None,
            secret_env: None,
            anonymous: false,
            account: None,
            use_emulator: false,
            service_account_path: None,
            max_retries: 3,
            retry_timeout_ms: 15_000,
            request_timeout_ms: 30_000,
            connect_timeout_ms: 5_000,
            part_size: crate::adapters::object_store::PART_SIZE as u64,
            part_concurrency: crate::adapters::object_store::PART_CONCURRENCY,
            check_conditional_writes: true,
        }
    }
}

/// Which KEK provider holds the tenants' root keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyProviderKind {
    /// A keyring file next to the data (`keys.keyring`): development only.
    Local,
    /// Keys in process memory, lost on exit: development and tests only.
    Memory,
    /// OpenBao or Vault Transit: one Transit key per tenant.
    Openbao,
}

/// The `[keys]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeysConfig {
    /// The provider. Default: `local` with the local blob backend, `memory` with the memory one.
    pub provider: Option<KeyProviderKind>,
    /// The keyring file of the `local` provider (created with mode 0600 on first use). Default:
    /// `<blob.root>.keys/keyring.json`, in a folder beside the data folder, not inside it (see
    /// [`StorageConfig::keyring_path`]).
    pub keyring: Option<PathBuf>,
    /// Address of the OpenBao/Vault server, e.g. `https://bao.internal:8200`.
    pub openbao_addr: Option<String>,
    /// Name of the environment variable that holds the OpenBao token (the token itself never
    /// goes in a file).
    pub openbao_token_env: String,
    /// Mount path of the Transit engine.
    pub openbao_mount: String,
    /// Prefix of the per-tenant Transit key names.
    pub openbao_key_prefix: String,
    /// Mount of a KV version 2 engine where the openbao provider keeps the key-record counters
    /// that make a rolled-back key record detectable by every process (e.g. `secret`). Unset:
    /// no counters (only a process that saw a newer record detects a rollback).
    pub openbao_counter_mount: Option<String>,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            provider: None,
            keyring: None,
            openbao_addr: None,
            openbao_token_env: "BAO_TOKEN".to_string(),
            openbao_mount: "transit".to_string(),
            openbao_key_prefix: "sanctum-".to_string(),
            openbao_counter_mount: None,
        }
    }
}

/// The cipher suite new messages are sealed with. Both are always readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptionSuite {
    /// 0x0001, C2SP Cobblestone-256 (HKDF-SHA-512): a NIST-approved KDF, readable by any C2SP
    /// reader. The default.
    #[default]
    Cobblestone256,
    /// 0x0003, BLAKE3 `derive_key` as the KDF: about 1.5 µs cheaper per message, resting on
    /// BLAKE3's own analysis, not FIPS-approved (docs/encryption.md).
    Blake3Chunked,
}

impl EncryptionSuite {
    /// The suite in sanctum-crypto's terms.
    pub fn suite(self) -> sanctum_crypto::Suite {
        match self {
            EncryptionSuite::Cobblestone256 => sanctum_crypto::Suite::Cobblestone256,
            EncryptionSuite::Blake3Chunked => sanctum_crypto::Suite::Blake3Aes256Gcm,
        }
    }
}

/// The `[encryption]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EncryptionConfig {
    /// The suite of new messages: `cobblestone-256` (default) or `blake3-chunked`.
    pub suite: EncryptionSuite,
    /// How long unwrapped keys stay in memory before the key store is read again, in ms
    /// (default 30000). Another process's rotation or shred is seen within this time; expired
    /// and shredded keys are wiped.
    pub key_cache_ttl_ms: u64,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            suite: EncryptionSuite::default(),
            key_cache_ttl_ms: 30_000,
        }
    }
}

/// Which engine decides access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyEngineKind {
    /// Grants from the built-in policy store.
    #[default]
    Builtin,
    /// Cedar policies from `policy.cedar_policies`, then grants (needs the `cedar` feature).
    Cedar,
}

/// The `[policy]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyConfig {
    /// The engine.
    pub engine: PolicyEngineKind,
    /// The Cedar policy file (with `engine = "cedar"`).
    pub cedar_policies: Option<PathBuf>,
    /// Actors that are admin of every tenant. Empty by default; the embedded default (the CLI
    /// without `--config`) makes `local` one.
    pub superusers: Vec<String>,
    /// How long a process uses grants and quotas it has read, in milliseconds (changes made by
    /// other processes show within this time; the process's own at once).
    pub cache_ttl_ms: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            engine: PolicyEngineKind::Builtin,
            cedar_policies: None,
            superusers: Vec::new(),
            cache_ttl_ms: 1000,
        }
    }
}

/// Where audit events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSinkKind {
    /// `tracing` events on target `sanctum::audit` (development only).
    #[default]
    Log,
    /// JSON lines appended to `audit.path`.
    Jsonl,
}

/// The `[audit]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// The sink (an injected `StorageDependencies::audit_sink` replaces it).
    pub sink: AuditSinkKind,
    /// The file of the `jsonl` sink.
    pub path: Option<PathBuf>,
    /// Whether the client must be able to record audit events: with `true`, a `jsonl` file
    /// that cannot be appended to fails [`create_storage_client`]
    /// with `Config` (fail closed). With `false`, the file is opened on the first event, and
    /// events that cannot be appended (on a read-only copy of a store, say) are dropped,
    /// counted and reported by [`Storage::audit_dropped`](crate::Storage::audit_dropped).
    /// Default (unset): `true` in production, `false` in development.
    pub required: Option<bool>,
}

impl StorageConfig {
    /// The keyring file of the `local` provider: `keys.keyring`, else `keyring.json` in a folder
    /// beside `blob.root` named after it with `.keys` added (`/srv/data` keeps its keyring in
    /// `/srv/data.keys/keyring.json`), so a copy or backup of the data folder does not carry the
    /// keys with it. `None` without either, or if `blob.root` has no last folder name (`/`, `..`).
    ///
    /// The default used to be `<blob.root>/keyring.json`, inside the data folder; a keyring found
    /// there is moved here once, by [`create_storage_client`].
    pub fn keyring_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.keys.keyring {
            return Some(path.clone());
        }
        Some(self.beside_blob_root(".keys")?.join("keyring.json"))
    }

    /// `<blob.root>` with `suffix` added to its last folder name, beside it (`/srv/data` and
    /// `.keys` give `/srv/data.keys`); `None` without a root, or if it has no last folder name.
    fn beside_blob_root(&self, suffix: &str) -> Option<PathBuf> {
        let root = self.blob.root.as_ref()?;
        let mut name = root.file_name()?.to_os_string();
        name.push(suffix);
        Some(root.parent().unwrap_or(Path::new("")).join(name))
    }

    /// Where the default keyring used to be, inside the data folder (`<blob.root>/keyring.json`),
    /// when `keys.keyring` is not set; a keyring there moves to [`StorageConfig::keyring_path`].
    pub(crate) fn old_default_keyring_path(&self) -> Option<PathBuf> {
        match (&self.keys.keyring, &self.blob.root) {
            (None, Some(root)) => Some(root.join("keyring.json")),
            _ => None,
        }
    }

    /// Whether audit is required: `audit.required`, else whether this is production.
    pub fn audit_required(&self) -> bool {
        self.audit
            .required
            .unwrap_or(self.environment == Environment::Production)
    }

    /// The key provider in effect (the configured one, or the backend's default).
    pub fn key_provider(&self) -> KeyProviderKind {
        self.keys.provider.unwrap_or(match self.blob.backend {
            BlobBackend::Memory => KeyProviderKind::Memory,
            _ => KeyProviderKind::Local,
        })
    }
}

/// Where records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordBackend {
    /// A SQLite file (`record.path`), the embedded default.
    #[default]
    Sqlite,
    /// A PostgreSQL server (`record.url`).
    Postgres,
}

/// The `[record]` section. Nothing connects until records are first used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordConfig {
    /// `sqlite` (default) or `postgres`.
    pub backend: RecordBackend,
    /// The SQLite file. Default: `records.db` in the embedded home; else `<blob.root>.records.db`
    /// beside a local blob root; else (memory blobs) an in-memory database.
    pub path: Option<PathBuf>,
    /// The PostgreSQL URL, without a password (`postgres://user@host:5432/db`).
    pub url: Option<String>,
    /// The environment variable that holds the PostgreSQL password (never the file).
    pub password_env: Option<String>,
    /// Most PostgreSQL connections.
    pub pool_size: u32,
    /// Server-side limit of each PostgreSQL statement, in ms.
    pub statement_timeout_ms: u64,
    /// Whether the PostgreSQL tables are created or migrated on first use (else run
    /// `sanctum migrate` with a role that may).
    pub auto_migrate: bool,
    /// The adapter's name in spans and metrics.
    pub adapter_name: String,
    /// Declared collections (`[[record.collections]]`), beside those declared in code.
    pub collections: Vec<CollectionConfig>,
}

/// One `[[record.collections]]`: a collection and its schema versions.
///
/// ```toml
/// [[record.collections]]
/// name = "users"
/// [[record.collections.versions]]
/// version = 1
/// schema = "schemas/users.v1.json"
/// [[record.collections.versions]]
/// version = 2
/// schema = "schemas/users.v2.json"
/// upcast = [{ rename = "/name", to = "/full_name" }, { add = "/plan", default = "free" }]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionConfig {
    /// The collection.
    pub name: String,
    /// Its schema versions, from 1, in order.
    pub versions: Vec<SchemaVersionConfig>,
}

/// One schema version of a [`CollectionConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaVersionConfig {
    /// The version number (1, 2, …).
    pub version: u32,
    /// The JSON Schema file; a relative path is relative to the configuration file's folder.
    pub schema: PathBuf,
    /// How a document of the previous version becomes one of this version (none: unchanged).
    #[serde(default)]
    pub upcast: Vec<crate::facade::record::UpcastStep>,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            backend: RecordBackend::Sqlite,
            path: None,
            url: None,
            password_env: None,
            pool_size: 8,
            statement_timeout_ms: 30_000,
            auto_migrate: true,
            adapter_name: "records".into(),
            collections: Vec::new(),
        }
    }
}

impl StorageConfig {
    /// The collections `[[record.collections]]` declares, their schema files read and compiled.
    /// A missing or malformed file, or an incomplete declaration, is a `Config` error.
    pub fn record_schemas(&self) -> Result<Vec<crate::facade::record::CollectionSchema>> {
        let mut out = Vec::new();
        for declared in &self.record.collections {
            let mut collection = crate::facade::record::CollectionSchema::new(&declared.name);
            for version in &declared.versions {
                let text = std::fs::read_to_string(&version.schema).map_err(|e| {
                    Error::config(format!(
                        "record.collections '{}': cannot read the schema of version {} at {}: {}",
                        declared.name,
                        version.version,
                        version.schema.display(),
                        e.kind()
                    ))
                })?;
                let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                    Error::config(format!(
                        "record.collections '{}': the schema of version {} ({}) is not JSON: {e}",
                        declared.name,
                        version.version,
                        version.schema.display()
                    ))
                })?;
                collection = collection.version(version.version, schema)?;
                if version.version > 1 {
                    collection =
                        collection.upcast_steps(version.version, version.upcast.clone())?;
                }
            }
            out.push(collection);
        }
        Ok(out)
    }

    /// Makes relative schema paths relative to `dir` (the configuration file's folder).
    pub(crate) fn resolve_schema_paths(&mut self, dir: &Path) {
        for collection in &mut self.record.collections {
            for version in &mut collection.versions {
                if version.schema.is_relative() {
                    version.schema = dir.join(&version.schema);
                }
            }
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageConfig {
    /// `development` (default) or `production`.
    pub environment: Environment,
    /// Blob storage.
    pub blob: BlobConfig,
    /// Encryption keys.
    pub keys: KeysConfig,
    /// Encryption of new data.
    pub encryption: EncryptionConfig,
    /// Access policy.
    pub policy: PolicyConfig,
    /// Audit events.
    pub audit: AuditConfig,
    /// Records.
    pub record: RecordConfig,
}

/// The largest allowed `blob.inline_threshold`.
pub const MAX_INLINE_THRESHOLD: u64 = 1024 * 1024;

impl StorageConfig {
    /// The embedded default: blobs in `<home>/blobs`, fsync durability, the development
    /// keyring in `<home>/keyring.json`, audit events in `<home>/audit.jsonl`, and actor `local`
    /// admin of every tenant (so a single user needs no setup; any other actor needs grants).
    pub fn embedded(home: impl Into<PathBuf>) -> Self {
        let home = home.into();
        let mut config = Self::default();
        config.blob.root = Some(home.join("blobs"));
        config.keys.keyring = Some(home.join("keyring.json"));
        config.policy.superusers = vec!["local".to_string()];
        config.audit.sink = AuditSinkKind::Jsonl;
        config.audit.path = Some(home.join("audit.jsonl"));
        config.record.path = Some(home.join("records.db"));
        config
    }

    /// The SQLite file of `record.backend = "sqlite"` (see [`RecordConfig::path`]); `None` for
    /// an in-memory database.
    pub fn record_path(&self) -> Option<PathBuf> {
        if let Some(path) = &self.record.path {
            return Some(path.clone());
        }
        self.beside_blob_root(".records.db")
    }

    /// Checks the values, returning every problem found.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut problem = |path: &str, message: &str| {
            out.push(ConfigProblem {
                path: path.to_string(),
                message: message.to_string(),
            })
        };
        if self.blob.backend == BlobBackend::Local && self.blob.root.is_none() {
            problem("blob.root", "required when blob.backend = \"local\"");
        }
        if self.blob.inline_threshold > MAX_INLINE_THRESHOLD {
            problem("blob.inline_threshold", "must be at most 1048576 (1 MiB)");
        }
        if self.blob.adapter_name.is_empty() {
            problem("blob.adapter_name", "must not be empty");
        }
        let backend = self.blob.backend;
        if !backend.is_compiled() {
            problem(
                "blob.backend",
                &format!(
                    "\"{0}\" needs sanctum-storage built with the `{0}` feature",
                    backend.as_str()
                ),
            );
        }
        if backend.is_cloud() {
            if self
                .blob
                .prefix
                .as_deref()
                .is_some_and(|p| crate::adapters::BlobPath::new(p).is_err())
            {
                problem(
                    "blob.prefix",
                    "must be '/'-separated segments of [a-z0-9._~-], none empty or starting with '.'",
                );
            }
            if self.blob.part_size < 5 * 1024 * 1024 || self.blob.part_size > 5 * 1024 * 1024 * 1024
            {
                problem("blob.part_size", "must be between 5 MiB and 5 GiB");
            }
            if self.blob.part_concurrency == 0 || self.blob.part_concurrency > 64 {
                problem("blob.part_concurrency", "must be between 1 and 64");
            }
            if self.blob.max_retries > 20 {
                problem("blob.max_retries", "must be at most 20");
            }
            if self.blob.request_timeout_ms == 0 || self.blob.connect_timeout_ms == 0 {
                problem(
                    "blob.request_timeout_ms",
                    "request and connect timeouts must be positive",
                );
            }
            if self.blob.use_emulator && backend != BlobBackend::Azure {
                problem(
                    "blob.use_emulator",
                    "only applies to blob.backend = \"azure\"",
                );
            }
        }
        match self.key_provider() {
            KeyProviderKind::Local if self.keyring_path().is_none() => {
                problem(
                    "keys.keyring",
                    "required when keys.provider = \"local\" and blob.root is not set (or has \
                     no last folder name to put the keyring beside)",
                );
            }
            KeyProviderKind::Openbao if self.keys.openbao_addr.is_none() => {
                problem(
                    "keys.openbao_addr",
                    "required when keys.provider = \"openbao\"",
                );
            }
            _ => {}
        }
        match self.policy.engine {
            PolicyEngineKind::Cedar if !cfg!(feature = "cedar") => problem(
                "policy.engine",
                "\"cedar\" needs sanctum-storage built with the `cedar` feature",
            ),
            PolicyEngineKind::Cedar if self.policy.cedar_policies.is_none() => problem(
                "policy.cedar_policies",
                "required when policy.engine = \"cedar\"",
            ),
            _ => {}
        }
        if self
            .policy
            .superusers
            .iter()
            .any(|a| crate::types::limits::validate_actor(a).is_err())
        {
            problem(
                "policy.superusers",
                "actors must be 1-256 bytes without control characters",
            );
        }
        if self.record.backend == RecordBackend::Postgres && self.record.url.is_none() {
            problem("record.url", "required when record.backend = \"postgres\"");
        }
        if self.record.pool_size == 0 || self.record.pool_size > 1000 {
            problem("record.pool_size", "must be between 1 and 1000");
        }
        if self.record.statement_timeout_ms == 0 {
            problem("record.statement_timeout_ms", "must be positive");
        }
        if self
            .record
            .url
            .as_deref()
            .is_some_and(|url| url.contains(':') && url_has_password(url))
        {
            problem(
                "record.url",
                "must not hold a password: name its environment variable in record.password_env",
            );
        }
        if self.audit.sink == AuditSinkKind::Jsonl && self.audit.path.is_none() {
            problem("audit.path", "required when audit.sink = \"jsonl\"");
        }
        if self.environment == Environment::Production {
            if matches!(
                self.key_provider(),
                KeyProviderKind::Local | KeyProviderKind::Memory
            ) {
                problem(
                    "keys.provider",
                    "development key providers (local, memory) are refused in production",
                );
            }
            if self.blob.backend == BlobBackend::Memory {
                problem(
                    "blob.backend",
                    "\"memory\" loses data on exit and is refused in production",
                );
            }
            if !self.policy.superusers.is_empty() {
                problem(
                    "policy.superusers",
                    "superusers are admin of every tenant and are refused in production; grant \
                     admin per tenant instead",
                );
            }
            if self.blob.allow_http == Some(true) || self.blob.use_emulator {
                problem(
                    "blob.allow_http",
                    "plain HTTP and the Azure emulator are for tests and are refused in production",
                );
            }
            if self.blob.durability == Durability::Os {
                problem(
                    "blob.durability",
                    "\"os\" may lose acknowledged writes and is refused in production",
                );
            }
        }
        out
    }
}

/// Whether a `scheme://user:password@host` URL carries a password.
fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}
