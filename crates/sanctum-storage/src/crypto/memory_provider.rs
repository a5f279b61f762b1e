//! [`MemoryKeyProvider`]: tenant KEKs in process memory, for tests and the in-memory backend.
//! Development only: everything is lost when the process exits.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use sanctum_crypto::{Context, DataKey, Header, KeyRef};
use zeroize::Zeroizing;

use super::{KeyError, KeyErrorKind, KeyProvider, WrappedKey};

const KIND: &str = "memory";

#[derive(Default)]
struct TenantKeks {
    versions: Vec<DataKey>,
    destroyed: bool,
}

impl TenantKeks {
    /// The KEK versions of a tenant that was not shredded, the first one created on first use.
    fn usable(&mut self) -> Result<&mut Vec<DataKey>, KeyError> {
        if self.destroyed {
            return Err(destroyed());
        }
        if self.versions.is_empty() {
            self.versions.push(new_kek()?);
        }
        Ok(&mut self.versions)
    }
}

fn destroyed() -> KeyError {
    error(KeyErrorKind::Destroyed, "the tenant's KEK was destroyed")
}

fn new_kek() -> Result<DataKey, KeyError> {
    DataKey::generate().map_err(|_| error(KeyErrorKind::Permanent, "no randomness"))
}

/// Tenant KEKs held in memory; `destroy` forgets them for good.
#[derive(Default)]
pub struct MemoryKeyProvider {
    tenants: Mutex<HashMap<String, TenantKeks>>,
    /// Monotonic counters by (tenant, name).
    counters: Mutex<HashMap<(String, String), u64>>,
}

impl std::fmt::Debug for MemoryKeyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryKeyProvider").finish_non_exhaustive()
    }
}

fn error(kind: KeyErrorKind, message: &str) -> KeyError {
    KeyError {
        kind,
        message: message.to_string(),
        source: None,
    }
}

use crate::hex::encode as hex;

fn context<'a>(tenant: &'a str, aad_hex: &'a str) -> Context<'a> {
    Context {
        tenant,
        namespace: "",
        object_key: aad_hex,
        body_id: "",
        kind: "kek-wrap",
    }
}

impl MemoryKeyProvider {
    /// An empty provider.
    pub fn new() -> Self {
        Self::default()
    }

    fn seal(&self, tenant: &str, key: &[u8; 32], aad: &[u8]) -> Result<WrappedKey, KeyError> {
        let mut tenants = self.tenants.lock().expect("memory keyring poisoned");
        let versions = tenants.entry(tenant.to_string()).or_default().usable()?;
        let version = versions.len() as u32;
        let kek = &versions[version as usize - 1];
        let aad_hex = hex(aad);
        let key_ref = KeyRef {
            key_id: "kek".to_string(),
            epoch: version,
        };
        let message = sanctum_crypto::encrypt(kek, key_ref, &context(tenant, &aad_hex), key)
            .map_err(|_| error(KeyErrorKind::Permanent, "wrapping failed"))?;
        Ok(WrappedKey {
            provider: KIND.to_string(),
            kek_version: version,
            ciphertext: hex(&message),
        })
    }
}

#[async_trait]
impl KeyProvider for MemoryKeyProvider {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn is_development(&self) -> bool {
        true
    }

    async fn wrap(&self, tenant: &str, key: &[u8; 32], aad: &[u8]) -> Result<WrappedKey, KeyError> {
        self.seal(tenant, key, aad)
    }

    async fn unwrap(
        &self,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let invalid = || error(KeyErrorKind::Invalid, "the wrapped key does not unwrap");
        let message = crate::hex::decode(&wrapped.ciphertext).ok_or_else(invalid)?;
        let (header, header_len) = Header::parse(&message).map_err(|_| invalid())?;
        let tenants = self.tenants.lock().expect("memory keyring poisoned");
        let keks = tenants
            .get(tenant)
            .ok_or_else(|| error(KeyErrorKind::NotFound, "no KEK for the tenant"))?;
        if keks.destroyed {
            return Err(destroyed());
        }
        let kek = keks
            .versions
            .get((header.key_ref.epoch as usize).wrapping_sub(1))
            .ok_or_else(invalid)?;
        let aad_hex = hex(aad);
        let ctx = context(tenant, &aad_hex);
        // The plaintext is a key: every copy is wiped.
        let plain = Zeroizing::new(
            sanctum_crypto::decrypt(kek, &header, header_len, &ctx, &message)
                .map_err(|_| invalid())?,
        );
        let mut bytes = Zeroizing::new([0u8; 32]);
        if plain.len() != bytes.len() {
            return Err(invalid());
        }
        bytes.copy_from_slice(&plain);
        Ok(bytes)
    }

    async fn rewrap(
        &self,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<WrappedKey, KeyError> {
        let key = self.unwrap(tenant, wrapped, aad).await?;
        self.seal(tenant, &key, aad)
    }

    async fn rotate(&self, tenant: &str) -> Result<u32, KeyError> {
        let mut tenants = self.tenants.lock().expect("memory keyring poisoned");
        let versions = tenants.entry(tenant.to_string()).or_default().usable()?;
        versions.push(new_kek()?);
        Ok(versions.len() as u32)
    }

    async fn destroy(&self, tenant: &str) -> Result<(), KeyError> {
        let mut tenants = self.tenants.lock().expect("memory keyring poisoned");
        let keks = tenants.entry(tenant.to_string()).or_default();
        keks.versions.clear(); // DataKey zeroizes on drop
        keks.destroyed = true;
        Ok(())
    }

    async fn health_check(&self) -> Result<(), KeyError> {
        Ok(())
    }

    /// Counters in process memory: every client sharing this provider sees them.
    fn keeps_counters(&self) -> bool {
        true
    }

    async fn counter(&self, tenant: &str, name: &str) -> Result<u64, KeyError> {
        sanctum_keys::validate_counter_name(name)?;
        let counters = self.counters.lock().expect("memory counters poisoned");
        Ok(counters
            .get(&(tenant.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0))
    }

    async fn raise_counter(&self, tenant: &str, name: &str, value: u64) -> Result<u64, KeyError> {
        sanctum_keys::validate_counter_name(name)?;
        let mut counters = self.counters.lock().expect("memory counters poisoned");
        let stored = counters
            .entry((tenant.to_string(), name.to_string()))
            .or_insert(0);
        *stored = (*stored).max(value);
        Ok(*stored)
    }
}
