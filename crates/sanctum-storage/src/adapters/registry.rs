//! The adapter registry: admits an adapter only after checking its declared capabilities and
//! running its `init` and `health_check`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::BlobAdapter;
use super::record::RecordAdapter;
use crate::config::Environment;
use crate::error::{Error, ErrorCode, Result};

/// Named blob and record adapters that passed admission.
#[derive(Debug, Default)]
pub struct AdapterRegistry {
    blobs: RwLock<BTreeMap<String, Arc<dyn BlobAdapter>>>,
    records: RwLock<BTreeMap<String, Arc<dyn RecordAdapter>>>,
}

impl AdapterRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `adapter`'s capabilities, runs `init` and `health_check`, then admits it under its
    /// name. A second adapter with the same name is a `Config` error.
    pub async fn register_blob(&self, adapter: Arc<dyn BlobAdapter>) -> Result<()> {
        check_blob_capabilities(adapter.as_ref())?;
        if self.blob(adapter.name()).is_some() {
            return Err(Error::config(format!(
                "a blob adapter named '{}' is already registered",
                adapter.name()
            )));
        }
        adapter.init().await?;
        adapter.health_check().await?;
        let mut blobs = self.blobs.write().expect("registry lock poisoned");
        if blobs.contains_key(adapter.name()) {
            return Err(Error::config(format!(
                "a blob adapter named '{}' is already registered",
                adapter.name()
            )));
        }
        blobs.insert(adapter.name().to_string(), adapter);
        Ok(())
    }

    /// Checks a record adapter's capabilities (conditional writes; durability in
    /// `production`), runs `init` (which migrates, unless told not to) and `health_check`, then
    /// admits it under its name. A second adapter with the same name is a `Config` error.
    pub async fn register_record(
        &self,
        adapter: Arc<dyn RecordAdapter>,
        environment: Environment,
    ) -> Result<()> {
        check_record_capabilities(adapter.as_ref(), environment)?;
        let taken = || {
            Error::config(format!(
                "a record adapter named '{}' is already registered",
                adapter.name()
            ))
        };
        if self.record(adapter.name()).is_some() {
            return Err(taken());
        }
        adapter.init().await?;
        adapter.health_check().await?;
        let mut records = self.records.write().expect("registry lock poisoned");
        if records.contains_key(adapter.name()) {
            return Err(taken());
        }
        records.insert(adapter.name().to_string(), adapter.clone());
        Ok(())
    }

    /// The admitted record adapter named `name`.
    pub fn record(&self, name: &str) -> Option<Arc<dyn RecordAdapter>> {
        self.records
            .read()
            .expect("registry lock poisoned")
            .get(name)
            .cloned()
    }

    /// The admitted adapter named `name`.
    pub fn blob(&self, name: &str) -> Option<Arc<dyn BlobAdapter>> {
        self.blobs
            .read()
            .expect("registry lock poisoned")
            .get(name)
            .cloned()
    }

    /// Disposes and removes every adapter.
    pub async fn dispose_all(&self) -> Result<()> {
        let adapters: Vec<_> =
            std::mem::take(&mut *self.blobs.write().expect("registry lock poisoned"))
                .into_values()
                .collect();
        for adapter in adapters {
            adapter.dispose().await?;
        }
        let records: Vec<_> =
            std::mem::take(&mut *self.records.write().expect("registry lock poisoned"))
                .into_values()
                .collect();
        for adapter in records {
            adapter.dispose().await?;
        }
        Ok(())
    }
}

/// Checks that a record adapter can carry the facade's optimistic locking, and, in
/// `production`, that what it acknowledges survives a crash.
pub fn check_record_capabilities(
    adapter: &dyn RecordAdapter,
    environment: Environment,
) -> Result<()> {
    let caps = adapter.capabilities();
    let mut problems = Vec::new();
    if adapter.name().is_empty() {
        problems.push("the adapter has an empty name");
    }
    if !caps.conditional_writes {
        problems.push("records need atomic conditional writes (compare-and-swap)");
    }
    if environment == Environment::Production && !caps.durable {
        problems.push("production needs a durable record database (not an in-memory one)");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::NotSupported,
            format!(
                "record adapter '{}' ({}) rejected: {}",
                adapter.name(),
                adapter.kind(),
                problems.join("; ")
            ),
        ))
    }
}

/// Checks that a blob adapter declares what the versioning model needs, consistently.
pub fn check_blob_capabilities(adapter: &dyn BlobAdapter) -> Result<()> {
    let caps = adapter.capabilities();
    let mut problems = Vec::new();
    if adapter.name().is_empty() {
        problems.push("the adapter has an empty name");
    }
    if !caps.conditional_create || !caps.conditional_update {
        problems
            .push("versioned blobs need atomic conditional create and update (compare-and-swap)");
    }
    if caps.atomic_conditional_delete && !caps.conditional_update {
        problems.push("atomic conditional delete is declared without conditional update");
    }
    if caps.durable && !caps.persistent {
        problems.push("durable is declared without persistent");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::NotSupported,
            format!(
                "blob adapter '{}' ({}) rejected: {}",
                adapter.name(),
                adapter.kind(),
                problems.join("; ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::BlobCapabilities;
    use crate::adapters::local::{Durability, LocalAdapter};
    use crate::adapters::object_store::ObjectStoreAdapter;

    fn memory_with(name: &str, caps: BlobCapabilities) -> Arc<dyn BlobAdapter> {
        Arc::new(ObjectStoreAdapter::new(
            "memory",
            name,
            Arc::new(::object_store::memory::InMemory::new()),
            caps,
        ))
    }

    #[tokio::test]
    async fn admits_good_adapters_once() {
        let registry = AdapterRegistry::new();
        registry
            .register_blob(Arc::new(ObjectStoreAdapter::in_memory("a")))
            .await
            .unwrap();
        assert!(registry.blob("a").is_some());
        let dup = registry
            .register_blob(Arc::new(ObjectStoreAdapter::in_memory("a")))
            .await
            .unwrap_err();
        assert_eq!(dup.code(), ErrorCode::Config);
        registry.dispose_all().await.unwrap();
        assert!(registry.blob("a").is_none());
    }

    #[tokio::test]
    async fn rejects_inconsistent_or_insufficient_capabilities() {
        let registry = AdapterRegistry::new();
        let full = ObjectStoreAdapter::in_memory("x").capabilities();
        let no_cas = BlobCapabilities {
            conditional_update: false,
            ..full
        };
        let err = registry
            .register_blob(memory_with("no-cas", no_cas))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotSupported);
        assert!(err.message().contains("compare-and-swap"), "{err}");
        let durable_only = BlobCapabilities {
            durable: true,
            persistent: false,
            ..full
        };
        assert_eq!(
            registry
                .register_blob(memory_with("odd", durable_only))
                .await
                .unwrap_err()
                .code(),
            ErrorCode::NotSupported
        );
        assert!(registry.blob("no-cas").is_none() && registry.blob("odd").is_none());
    }

    #[tokio::test]
    async fn admits_record_adapters_by_capability() {
        use crate::adapters::record::sql::SqliteRecordAdapter;
        let registry = AdapterRegistry::new();
        let memory: Arc<dyn RecordAdapter> = Arc::new(SqliteRecordAdapter::in_memory("r"));
        let err = registry
            .register_record(memory.clone(), Environment::Production)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::NotSupported);
        assert!(err.message().contains("durable"), "{err}");
        assert!(registry.record("r").is_none());
        registry
            .register_record(memory.clone(), Environment::Development)
            .await
            .unwrap();
        assert!(registry.record("r").is_some());
        let dup = registry
            .register_record(memory, Environment::Development)
            .await
            .unwrap_err();
        assert_eq!(dup.code(), ErrorCode::Config);
        // A database under a regular file can never open: init fails, nothing is admitted.
        let file = tempfile::NamedTempFile::new().unwrap();
        let broken = SqliteRecordAdapter::new("broken", file.path().join("db/records.db"));
        let err = registry
            .register_record(Arc::new(broken), Environment::Development)
            .await
            .unwrap_err();
        assert_ne!(err.code(), ErrorCode::NotSupported, "{err}");
        assert!(registry.record("broken").is_none());
        registry.dispose_all().await.unwrap();
        assert!(registry.record("r").is_none());
    }

    #[tokio::test]
    async fn rejects_adapters_whose_init_or_health_check_fails() {
        let file = tempfile::NamedTempFile::new().unwrap();
        // A root below a regular file can never be created.
        let broken = LocalAdapter::new("broken", file.path().join("root"), Durability::Fsync);
        let err = AdapterRegistry::new()
            .register_blob(Arc::new(broken))
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::PermanentAdapter);
    }
}
