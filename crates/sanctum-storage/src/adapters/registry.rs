//! The adapter registry: admits an adapter only after checking its declared capabilities and
//! running its `init` and `health_check`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::BlobAdapter;
use crate::error::{Error, ErrorCode, Result};

/// Named blob adapters that passed admission.
#[derive(Debug, Default)]
pub struct AdapterRegistry {
    blobs: RwLock<BTreeMap<String, Arc<dyn BlobAdapter>>>,
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
        Ok(())
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
