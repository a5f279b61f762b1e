//! [`create_storage_client`]: builds a [`Storage`] from a validated config and the injected
//! dependencies.

use std::sync::Arc;
use std::time::Duration;

use super::{
    AuditSinkKind, BlobBackend, ConfigProblem, ConfigReport, Environment, KeyProviderKind,
    PolicyEngineKind, RecordBackend, StorageConfig,
};
use crate::adapters::BlobAdapter;
use crate::adapters::local::LocalAdapter;
use crate::adapters::object_store::ObjectStoreAdapter;
use crate::adapters::record::sql::{PostgresRecordAdapter, PostgresSettings, SqliteRecordAdapter};
use crate::adapters::record::{RecordAdapter, UnconfiguredRecords};
use crate::adapters::registry::AdapterRegistry;
use crate::crypto::{KeyManager, KeyProvider, LocalKeyring, MemoryKeyProvider, OpenBaoTransit};
use crate::error::{Error, Result};
use crate::facade::record::{CollectionSchema, RecordStore, RecordStoreParts, SchemaRegistry};
use crate::facade::{BlobSettings, BlobStore, Storage};
use crate::observability::audit::{AuditSink, JsonLinesAuditSink, TracingAuditSink};
use crate::observability::clock::{Clock, SystemClock};
use crate::policy::{AccessSettings, BuiltinEngine, PolicyEngine};

/// What the application injects. Every field has a default; in `production` an audit sink must
/// be injected or configured (`audit.sink = "jsonl"`). (The cache tier joins this struct with
/// the cache layer.)
#[derive(Debug, Clone, Default)]
pub struct StorageDependencies {
    /// Where audit events go. Default: `tracing` events on target `sanctum::audit` (development only).
    pub audit_sink: Option<Arc<dyn AuditSink>>,
    /// The clock. Default: the system clock.
    pub clock: Option<Arc<dyn Clock>>,
    /// A custom blob adapter to use instead of the configured backend.
    pub blob_adapter: Option<Arc<dyn BlobAdapter>>,
    /// A custom KEK provider to use instead of the configured one.
    pub key_provider: Option<Arc<dyn KeyProvider>>,
    /// A custom record adapter to use instead of the configured database.
    pub record_adapter: Option<Arc<dyn RecordAdapter>>,
    /// Collections declared in code, beside `[[record.collections]]` (a name may not be in
    /// both).
    pub record_schemas: Vec<CollectionSchema>,
}

/// Validates `config`, admits the blob adapter through the registry (capabilities, `init`,
/// `health_check`) and returns the client.
pub async fn create_storage_client(
    config: StorageConfig,
    deps: StorageDependencies,
) -> Result<Storage> {
    let mut problems = config.problems();
    if deps.key_provider.is_some() {
        // An injected provider replaces the configured one, so its settings do not matter.
        problems.retain(|p| !p.path.starts_with("keys."));
    }
    if config.environment == Environment::Production
        && deps.audit_sink.is_none()
        && config.audit.sink == AuditSinkKind::Log
    {
        problems.push(ConfigProblem {
            path: "audit.sink".into(),
            message: "production needs an audit sink (audit.sink = \"jsonl\" or an injected \
                      one); \"log\" only logs"
                .into(),
        });
    }
    if config.environment == Environment::Production
        && let Some(custom) = &deps.blob_adapter
        && !custom.capabilities().durable
    {
        problems.push(ConfigProblem {
            path: "dependencies.blob_adapter".into(),
            message: format!(
                "adapter '{}' is not durable, which production refuses",
                custom.name()
            ),
        });
    }
    if config.environment == Environment::Production
        && let Some(custom) = &deps.key_provider
        && custom.is_development()
    {
        problems.push(ConfigProblem {
            path: "dependencies.key_provider".into(),
            message: format!("key provider '{}' is for development only", custom.kind()),
        });
    }
    if !problems.is_empty() {
        let report = ConfigReport { problems };
        return Err(Error::config(format!("invalid configuration: {report}")).with_source(report));
    }
    let mut declared = config.record_schemas()?;
    declared.extend(deps.record_schemas);
    let schemas = SchemaRegistry::new(declared)?;
    let injected_provider = deps.key_provider.is_some();
    let provider: Arc<dyn KeyProvider> = match deps.key_provider {
        Some(custom) => custom,
        None => configured_provider(&config)?,
    };
    let adapter: Arc<dyn BlobAdapter> = match deps.blob_adapter {
        Some(custom) => custom,
        None => match config.blob.backend {
            BlobBackend::Local => Arc::new(LocalAdapter::new(
                config.blob.adapter_name.clone(),
                config
                    .blob
                    .root
                    .clone()
                    .expect("validated: local needs a root"),
                config.blob.durability,
            )),
            BlobBackend::Memory => Arc::new(ObjectStoreAdapter::in_memory(
                config.blob.adapter_name.clone(),
            )),
            BlobBackend::S3 | BlobBackend::Gcs | BlobBackend::Azure => {
                Arc::new(crate::adapters::cloud::adapter_from_config(&config.blob)?)
            }
        },
    };
    let registry = Arc::new(AdapterRegistry::new());
    registry.register_blob(adapter.clone()).await?;
    let audit: Arc<dyn AuditSink> = match (deps.audit_sink, config.audit.sink) {
        (Some(custom), _) => custom,
        (None, AuditSinkKind::Log) => Arc::new(TracingAuditSink),
        (None, AuditSinkKind::Jsonl) => {
            let path = config
                .audit
                .path
                .as_ref()
                .expect("validated: jsonl needs a path");
            if config.audit_required() {
                Arc::new(JsonLinesAuditSink::open(path).map_err(|e| {
                    Error::config(format!(
                        "audit.path: cannot append to {}: {}; audit is required (audit.required, \
                         on by default in production), so nothing runs unaudited",
                        path.display(),
                        e.kind()
                    ))
                    .with_source(e)
                })?)
            } else {
                Arc::new(JsonLinesAuditSink::new(path))
            }
        }
    };
    let engine: Arc<dyn PolicyEngine> = match config.policy.engine {
        PolicyEngineKind::Builtin => Arc::new(BuiltinEngine),
        #[cfg(feature = "cedar")]
        PolicyEngineKind::Cedar => Arc::new(crate::policy::cedar::CedarEngine::from_file(
            config
                .policy
                .cedar_policies
                .as_deref()
                .expect("validated: cedar needs a policy file"),
        )?),
        #[cfg(not(feature = "cedar"))]
        PolicyEngineKind::Cedar => unreachable!("validated: cedar needs the feature"),
    };
    let access = AccessSettings {
        engine,
        superusers: config.policy.superusers.clone(),
        cache_ttl: Duration::from_millis(config.policy.cache_ttl_ms),
    };
    let clock: Arc<dyn Clock> = deps.clock.unwrap_or_else(|| Arc::new(SystemClock));
    let keys = Arc::new(
        KeyManager::new(provider, adapter.clone(), clock.clone())
            .with_cache_ttl(Duration::from_millis(config.encryption.key_cache_ttl_ms))
            .with_suite(config.encryption.suite.suite()),
    );
    // Other fields exist only under some features, so the update is needless without them.
    #[allow(clippy::needless_update)]
    let settings = BlobSettings {
        inline_threshold: config.blob.inline_threshold,
        ..Default::default()
    };
    let record_adapter = match deps.record_adapter {
        Some(custom) => custom,
        None => configured_records(&config)?,
    };
    let blobs = BlobStore::new(
        adapter,
        keys.clone(),
        clock.clone(),
        audit.clone(),
        settings,
    )
    .with_access(access);
    let records = RecordStore::new(RecordStoreParts {
        adapter: record_adapter,
        keys,
        clock,
        audit,
        access: blobs.authorizer_arc(),
        quotas: blobs.quota_ledger(),
        registry: registry.clone(),
        schemas,
        environment: config.environment,
    });
    let keyring = match (injected_provider, config.key_provider()) {
        (false, KeyProviderKind::Local) => config.keyring_path(),
        _ => None,
    };
    Ok(Storage::new(blobs, records, registry, config.environment).with_keyring(keyring))
}

/// The record adapter the configuration names. Nothing connects here: the database opens on
/// first use.
fn configured_records(config: &StorageConfig) -> Result<Arc<dyn RecordAdapter>> {
    let record = &config.record;
    let name = record.adapter_name.clone();
    Ok(match record.backend {
        RecordBackend::Sqlite => match (config.record_path(), config.blob.backend) {
            (Some(path), _) => Arc::new(SqliteRecordAdapter::new(name, path)),
            (None, BlobBackend::Memory) => Arc::new(SqliteRecordAdapter::in_memory(name)),
            (None, _) => Arc::new(UnconfiguredRecords),
        },
        RecordBackend::Postgres => {
            let password = match &record.password_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    Error::config(format!(
                        "record.password_env: environment variable {var} is not set"
                    ))
                })?),
                None => None,
            };
            Arc::new(PostgresRecordAdapter::new(
                name,
                PostgresSettings {
                    url: record.url.clone().expect("validated: postgres needs a url"),
                    password,
                    pool_size: record.pool_size,
                    statement_timeout: Duration::from_millis(record.statement_timeout_ms),
                    auto_migrate: record.auto_migrate,
                },
            ))
        }
    })
}

/// The KEK provider the configuration names.
fn configured_provider(config: &StorageConfig) -> Result<Arc<dyn KeyProvider>> {
    let keys = &config.keys;
    Ok(match config.key_provider() {
        KeyProviderKind::Memory => Arc::new(MemoryKeyProvider::new()),
        KeyProviderKind::Local => {
            let path = config
                .keyring_path()
                .expect("validated: local needs a keyring");
            // The default keyring used to live inside the data folder: move it out, once.
            if let Some(old) = config.old_default_keyring_path() {
                LocalKeyring::relocate(&old, &path).map_err(|e| {
                    Error::config(format!(
                        "keys.keyring: cannot move the keyring from its old default place: {}; \
                         or set keys.keyring to the keyring to use",
                        e.message
                    ))
                    .with_source(e)
                })?;
            }
            Arc::new(LocalKeyring::open(path).map_err(crate::crypto::key_err)?)
        }
        KeyProviderKind::Openbao => {
            let addr = keys
                .openbao_addr
                .as_deref()
                .expect("validated: openbao needs an address");
            let token = std::env::var(&keys.openbao_token_env).map_err(|_| {
                Error::config(format!(
                    "keys.openbao_token_env: environment variable {} is not set",
                    keys.openbao_token_env
                ))
            })?;
            let transit =
                OpenBaoTransit::new(addr, token, &keys.openbao_mount, &keys.openbao_key_prefix)
                    .map_err(crate::crypto::key_err)?;
            Arc::new(match &keys.openbao_counter_mount {
                Some(kv) => transit.with_counters(kv).map_err(crate::crypto::key_err)?,
                None => transit,
            })
        }
    })
}
