//! The facade: the public API callers use. It orchestrates validation, policy and quotas,
//! encryption, (later) the cache, the adapter, and observability, in the order ARCHITECTURE.md
//! gives.

mod admin;
mod blob;
mod keys;
mod layout;
pub(crate) mod manifest;
pub mod options;
mod parts;
pub mod record;
mod sealing;
mod stream;

pub use admin::{PolicyAdmin, QuotaAdmin};
pub use blob::{BlobSettings, BlobStore};
pub use keys::{KeyAdmin, ReencryptOptions, ReencryptReport, RetireReport};
pub use options::{
    BlobList, BlobRead, ByteRange, DamagedKey, GetOptions, ListOptions, MAX_LIST_LIMIT, PutOptions,
    SweepReport,
};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::LeftoverReport;
use crate::adapters::registry::AdapterRegistry;
use crate::config::Environment;
use crate::crypto::LocalKeyring;
use crate::error::{Error, Result};
use crate::observability::audit::AuditDropped;

/// The storage client: one handle to every kind of storage. Build it with
/// [`create_storage_client`](crate::create_storage_client).
#[derive(Debug, Clone)]
pub struct Storage {
    blobs: BlobStore,
    records: record::RecordStore,
    registry: Arc<AdapterRegistry>,
    environment: Environment,
    /// The file of the configured local keyring, if that is the key provider.
    keyring: Option<PathBuf>,
}

/// What [`Storage::health`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthReport {
    /// The configured environment.
    pub environment: Environment,
    /// Kind of the blob adapter.
    pub blob_adapter_kind: &'static str,
    /// Name of the blob adapter.
    pub blob_adapter_name: String,
    /// Whether its health check passed.
    pub blob_ok: bool,
    /// The health check's error, when it failed.
    pub blob_error: Option<String>,
    /// Kind of the key provider (e.g. `local-keyring`, `openbao-transit`).
    pub key_provider_kind: &'static str,
    /// Whether the key provider's health check passed.
    pub keys_ok: bool,
    /// The key provider's error, when its check failed.
    pub keys_error: Option<String>,
}

impl HealthReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.blob_ok && self.keys_ok
    }
}

impl Storage {
    pub(crate) fn new(
        blobs: BlobStore,
        records: record::RecordStore,
        registry: Arc<AdapterRegistry>,
        environment: Environment,
    ) -> Self {
        Self {
            blobs,
            records,
            registry,
            environment,
            keyring: None,
        }
    }

    /// Sets the file of the configured local keyring.
    pub(crate) fn with_keyring(self, keyring: Option<PathBuf>) -> Self {
        Self { keyring, ..self }
    }

    /// Versioned blobs.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Records: JSON documents with optimistic locking. The database opens on first use.
    pub fn records(&self) -> &record::RecordStore {
        &self.records
    }

    /// Grants of the built-in policy.
    pub fn policy(&self) -> PolicyAdmin {
        PolicyAdmin {
            blobs: self.blobs.clone(),
        }
    }

    /// Namespace quotas.
    pub fn quotas(&self) -> QuotaAdmin {
        QuotaAdmin {
            blobs: self.blobs.clone(),
        }
    }

    /// Key operations: rotation, re-encryption, crypto-shredding.
    pub fn keys(&self) -> KeyAdmin {
        KeyAdmin {
            blobs: self.blobs.clone(),
            records: self.records.clone(),
        }
    }

    /// Runs the blob adapter's and the key provider's health checks.
    pub async fn health(&self) -> HealthReport {
        let adapter = self.blobs.adapter();
        let provider = self.blobs.keys().provider();
        let (check, keys) = futures::join!(adapter.health_check(), provider.health_check());
        HealthReport {
            environment: self.environment,
            blob_adapter_kind: adapter.kind(),
            blob_adapter_name: adapter.name().to_string(),
            blob_ok: check.is_ok(),
            blob_error: check.err().map(|e| e.to_string()),
            key_provider_kind: provider.kind(),
            keys_ok: keys.is_ok(),
            keys_error: keys.err().map(|e| e.to_string()),
        }
    }

    /// The audit events that could not be recorded so far (none with a sink that cannot fail):
    /// an application should warn that operations went unaudited, as the CLI does. See
    /// [`AuditSink::dropped`](crate::observability::audit::AuditSink::dropped).
    pub fn audit_dropped(&self) -> Option<AuditDropped> {
        self.blobs.audit.dropped()
    }

    /// Removes the temporary files that killed writers of the configured local keyring left
    /// next to it, once last written at least `older_than` ago (see
    /// [`LocalKeyring::sweep_temp_files`]). With any other key provider there is nothing to
    /// remove. The keyring serves every tenant, so this is for the operator of the store, not
    /// an operation on behalf of a tenant: it takes no context and checks no grant.
    pub async fn sweep_keyring_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        let Some(path) = self.keyring.clone() else {
            return Ok(LeftoverReport::default());
        };
        let swept = tokio::task::spawn_blocking(move || {
            LocalKeyring::sweep_temp_files(&path, older_than).map_err(|e| {
                let folder = path.parent().unwrap_or(&path).display().to_string();
                Error::from_backend_io(
                    e,
                    &format!("cannot remove the keyring's temp files in {folder}"),
                )
            })
        })
        .await
        .map_err(|e| {
            Error::new(crate::ErrorCode::PermanentAdapter, "keyring sweep failed").with_source(e)
        })??;
        Ok(LeftoverReport {
            files: swept.0,
            bytes: swept.1,
        })
    }

    /// Disposes every adapter. The client must not be used afterwards.
    pub async fn close(&self) -> Result<()> {
        self.records.adapter().dispose().await?;
        self.registry.dispose_all().await
    }
}
