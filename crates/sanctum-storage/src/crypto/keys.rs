//! [`KeyManager`]: the tenant and namespace keys, persisted (wrapped) through the blob adapter,
//! cached in memory (zeroized on drop) and handed out per namespace.
//!
//! Records live beside the data, under paths no facade call can name:
//! `k/<tenant>/tenant` (the tenant key, wrapped by the tenant's KEK) and `k/<tenant>/n/<ns>`
//! (the namespace's data keys, one per epoch, each wrapped by the tenant key with the
//! sanctum-crypto format). Both are replaced with compare-and-swap, so concurrent processes
//! agree. Cached keys expire after [`CACHE_TTL`] so other processes' rotations and shreds are
//! seen; a shred in this process drops the tenant's keys at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{KeyProvider, WrappedKey, crypto_err, key_err};
use crate::adapters::json::{read_json, write_json};
use crate::adapters::{BlobAdapter, BlobPath, PutMode};
use crate::error::{Error, ErrorCode, Result};
use crate::observability::clock::{Clock, new_id};
use sanctum_crypto::{Context, DataKey, KeyRef};

/// How long unwrapped keys stay cached before the key store is read again.
pub const CACHE_TTL: Duration = Duration::from_secs(30);
/// How many times a key-store update retries a lost compare-and-swap.
const MAX_ATTEMPTS: usize = 20;
/// Key id of the tenant key when it wraps data keys.
const TENANT_KEY_ID: &str = "tenant";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TenantRecord {
    format: u32,
    /// Set by a shred: the tenant's KEK is gone and no key will be made for it again.
    #[serde(default)]
    shredded: bool,
    wrapped: Option<WrappedKey>,
    created_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EpochRecord {
    epoch: u32,
    /// The data key, encrypted under the tenant key (sanctum-crypto message, hex).
    wrapped: String,
    created_at_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NamespaceRecord {
    format: u32,
    key_id: String,
    current: u32,
    epochs: Vec<EpochRecord>,
}

/// The data keys of one namespace: every epoch, and which one new writes use.
pub struct NamespaceKeys {
    key_id: String,
    current: u32,
    keys: BTreeMap<u32, DataKey>,
}

impl std::fmt::Debug for NamespaceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceKeys")
            .field("key_id", &self.key_id)
            .field("current", &self.current)
            .field("epochs", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl NamespaceKeys {
    /// The key reference and key new writes use.
    pub fn current(&self) -> (KeyRef, &DataKey) {
        let key = self
            .keys
            .get(&self.current)
            .expect("the current epoch is always loaded");
        (
            KeyRef {
                key_id: self.key_id.clone(),
                epoch: self.current,
            },
            key,
        )
    }

    /// The newest epoch.
    pub fn current_epoch(&self) -> u32 {
        self.current
    }

    /// The key for `key_ref`, which must name this namespace's key and one of its epochs: a
    /// header from stored data never selects a key of another namespace or tenant.
    pub fn key_for(&self, key_ref: &KeyRef) -> Result<&DataKey> {
        if key_ref.key_id != self.key_id {
            return Err(Error::new(
                ErrorCode::Encryption,
                "encrypted data names a key of another namespace",
            ));
        }
        self.keys.get(&key_ref.epoch).ok_or_else(|| {
            Error::new(
                ErrorCode::Encryption,
                "encrypted data names an unknown key epoch",
            )
        })
    }
}

struct CachedTenant {
    loaded: Instant,
    tenant_key: Arc<DataKey>,
    namespaces: HashMap<String, (Instant, Arc<NamespaceKeys>)>,
}

/// Loads, creates, caches, rotates and destroys keys.
pub struct KeyManager {
    provider: Arc<dyn KeyProvider>,
    adapter: Arc<dyn BlobAdapter>,
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, CachedTenant>>,
    /// Tenants shredded by this process: no key of theirs is loaded or cached again, even by a
    /// load that was already under way when the shred happened.
    shredded: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyManager")
            .field("provider", &self.provider.kind())
            .finish()
    }
}

/// What a KEK rotation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KekRotation {
    /// The tenant's new KEK version.
    pub kek_version: u32,
}

fn enc(message: &str) -> Error {
    Error::new(ErrorCode::Encryption, message.to_string())
}

/// Length-prefixed associated data binding a wrapped tenant key to its tenant.
fn tenant_key_aad(tenant: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for part in ["sanctum-storage/v1", "tenant-key", tenant] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The context a data key is wrapped under: its tenant, namespace, key id and epoch.
fn dek_context<'a>(tenant: &'a str, ns: &'a str, key_epoch: &'a str) -> Context<'a> {
    Context {
        tenant,
        namespace: ns,
        object_key: "",
        body_id: key_epoch,
        kind: "namespace-data-key",
    }
}

use crate::hex::encode as hex;

fn unhex(s: &str) -> Result<Vec<u8>> {
    crate::hex::decode(s).ok_or_else(|| Error::consistency("key store record is corrupt"))
}

impl KeyManager {
    /// A manager over `provider`, storing records through `adapter`.
    pub fn new(
        provider: Arc<dyn KeyProvider>,
        adapter: Arc<dyn BlobAdapter>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            provider,
            adapter,
            clock,
            cache: Mutex::new(HashMap::new()),
            shredded: Mutex::new(HashSet::new()),
        }
    }

    /// The KEK provider.
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// Where the tenant key record of `tenant` lives.
    pub(crate) fn tenant_path(tenant: &str) -> Result<BlobPath> {
        BlobPath::new(format!("k/{tenant}/tenant"))
    }

    /// Where the key record of namespace `ns` of `tenant` lives.
    pub(crate) fn namespace_path(tenant: &str, ns: &str) -> Result<BlobPath> {
        BlobPath::new(format!("k/{tenant}/n/{ns}"))
    }

    async fn read_record<T: for<'de> Deserialize<'de>>(
        &self,
        path: &BlobPath,
    ) -> Result<Option<(T, String)>> {
        read_json(self.adapter.as_ref(), path, u64::MAX, "key store record").await
    }

    async fn write_record<T: Serialize>(
        &self,
        path: &BlobPath,
        record: &T,
        mode: PutMode,
    ) -> Result<()> {
        write_json(
            self.adapter.as_ref(),
            path,
            record,
            mode,
            "a key store record",
        )
        .await
    }

    /// The tenant key, creating the tenant's keys on first use when `create` is set.
    async fn tenant_key(&self, tenant: &str, create: bool) -> Result<Arc<DataKey>> {
        self.check_not_shredded(tenant)?;
        if let Some(cached) = self.cache.lock().expect("key cache poisoned").get(tenant)
            && cached.loaded.elapsed() < CACHE_TTL
        {
            return Ok(cached.tenant_key.clone());
        }
        let path = Self::tenant_path(tenant)?;
        let aad = tenant_key_aad(tenant);
        for _ in 0..MAX_ATTEMPTS {
            match self.read_record::<TenantRecord>(&path).await? {
                Some((record, _)) if record.shredded => {
                    return Err(enc("the tenant's keys were destroyed (crypto-shredded)"));
                }
                Some((record, _)) => {
                    let wrapped = record
                        .wrapped
                        .ok_or_else(|| enc("the tenant key record has no key"))?;
                    let key = self
                        .provider
                        .unwrap(tenant, &wrapped, &aad)
                        .await
                        .map_err(key_err)?;
                    let key = Arc::new(DataKey::from_bytes(*key));
                    // Checked again under the cache lock: a shred may have finished meanwhile.
                    let mut cache = self.cache.lock().expect("key cache poisoned");
                    self.check_not_shredded(tenant)?;
                    let entry = cache
                        .entry(tenant.to_string())
                        .or_insert_with(|| CachedTenant {
                            loaded: Instant::now(),
                            tenant_key: key.clone(),
                            namespaces: HashMap::new(),
                        });
                    entry.loaded = Instant::now();
                    entry.tenant_key = key.clone();
                    return Ok(key);
                }
                None if !create => return Err(Error::not_found("no keys exist for the tenant")),
                None => {
                    let key = DataKey::generate().map_err(crypto_err)?;
                    let wrapped = self
                        .provider
                        .wrap(tenant, key.as_bytes(), &aad)
                        .await
                        .map_err(key_err)?;
                    let record = TenantRecord {
                        format: 1,
                        shredded: false,
                        wrapped: Some(wrapped),
                        created_at_ms: self.clock.now_ms(),
                    };
                    match self.write_record(&path, &record, PutMode::Create).await {
                        // Re-read: ours, or a concurrent creator's.
                        Ok(()) => continue,
                        Err(e) if e.code() == ErrorCode::Conflict => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(Error::conflict(
            "gave up creating the tenant key after repeated concurrent changes",
        ))
    }

    /// The data keys of `ns`, creating them on first use when `create` is set.
    pub async fn namespace(
        &self,
        tenant: &str,
        ns: &str,
        create: bool,
    ) -> Result<Arc<NamespaceKeys>> {
        if let Some(cached) = self.cache.lock().expect("key cache poisoned").get(tenant)
            && let Some((loaded, keys)) = cached.namespaces.get(ns)
            && loaded.elapsed() < CACHE_TTL
        {
            return Ok(keys.clone());
        }
        let tenant_key = self.tenant_key(tenant, create).await?;
        let path = Self::namespace_path(tenant, ns)?;
        for _ in 0..MAX_ATTEMPTS {
            match self.read_record::<NamespaceRecord>(&path).await? {
                Some((record, _)) => {
                    let keys = Arc::new(self.unwrap_namespace(tenant, ns, &tenant_key, &record)?);
                    if let Some(cached) = self
                        .cache
                        .lock()
                        .expect("key cache poisoned")
                        .get_mut(tenant)
                    {
                        cached
                            .namespaces
                            .insert(ns.to_string(), (Instant::now(), keys.clone()));
                    }
                    return Ok(keys);
                }
                None if !create => return Err(Error::not_found("no keys exist for the namespace")),
                None => {
                    let key_id = new_id(self.clock.as_ref());
                    let first = self.new_epoch(tenant, ns, &tenant_key, &key_id, 1)?;
                    let record = NamespaceRecord {
                        format: 1,
                        key_id,
                        current: 1,
                        epochs: vec![first],
                    };
                    match self.write_record(&path, &record, PutMode::Create).await {
                        // Re-read: ours, or a concurrent creator's.
                        Ok(()) => {}
                        Err(e) if e.code() == ErrorCode::Conflict => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(Error::conflict(
            "gave up creating namespace keys after repeated concurrent changes",
        ))
    }

    fn new_epoch(
        &self,
        tenant: &str,
        ns: &str,
        tenant_key: &DataKey,
        key_id: &str,
        epoch: u32,
    ) -> Result<EpochRecord> {
        let dek = DataKey::generate().map_err(crypto_err)?;
        let key_ref = KeyRef {
            key_id: TENANT_KEY_ID.to_string(),
            epoch: 0,
        };
        let key_epoch = format!("{key_id}.{epoch}");
        let wrapped = sanctum_crypto::encrypt(
            tenant_key,
            key_ref,
            &dek_context(tenant, ns, &key_epoch),
            dek.as_bytes(),
        )
        .map_err(crypto_err)?;
        Ok(EpochRecord {
            epoch,
            wrapped: hex(&wrapped),
            created_at_ms: self.clock.now_ms(),
        })
    }

    fn unwrap_namespace(
        &self,
        tenant: &str,
        ns: &str,
        tenant_key: &DataKey,
        record: &NamespaceRecord,
    ) -> Result<NamespaceKeys> {
        let mut keys = BTreeMap::new();
        for epoch in &record.epochs {
            let message = unhex(&epoch.wrapped)?;
            let key_epoch = format!("{}.{}", record.key_id, epoch.epoch);
            let ctx = dek_context(tenant, ns, &key_epoch);
            let plain =
                crate::crypto::decrypt_message(tenant_key, &ctx, &message).map_err(crypto_err)?;
            let bytes: [u8; 32] = plain
                .as_slice()
                .try_into()
                .map_err(|_| enc("a wrapped data key has the wrong length"))?;
            keys.insert(epoch.epoch, DataKey::from_bytes(bytes));
        }
        if !keys.contains_key(&record.current) {
            return Err(Error::consistency(
                "the namespace key record lacks its current epoch",
            ));
        }
        Ok(NamespaceKeys {
            key_id: record.key_id.clone(),
            current: record.current,
            keys,
        })
    }

    /// Adds a data-key epoch to `ns`: new writes use it; data under older epochs stays readable.
    pub async fn rotate_namespace(&self, tenant: &str, ns: &str) -> Result<u32> {
        let tenant_key = self.tenant_key(tenant, true).await?;
        let path = Self::namespace_path(tenant, ns)?;
        for _ in 0..MAX_ATTEMPTS {
            // A namespace that never stored anything has no key to rotate: saying so catches
            // a mistyped name, where creating keys for it would hide the mistake.
            let Some((mut record, etag)) = self.read_record::<NamespaceRecord>(&path).await? else {
                return Err(Error::not_found(format!(
                    "namespace '{ns}' has no keys to rotate: nothing has been stored in it"
                )));
            };
            let epoch = record.epochs.iter().map(|e| e.epoch).max().unwrap_or(0) + 1;
            record
                .epochs
                .push(self.new_epoch(tenant, ns, &tenant_key, &record.key_id, epoch)?);
            record.current = epoch;
            match self
                .write_record(&path, &record, PutMode::Update(etag))
                .await
            {
                Ok(()) => {
                    self.forget_namespace(tenant, ns);
                    return Ok(epoch);
                }
                Err(e) if e.code() == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "gave up rotating the namespace key after repeated concurrent changes",
        ))
    }

    /// Rotates the tenant's KEK and re-wraps the tenant key under the new version. No data and
    /// no data key is rewritten.
    pub async fn rotate_kek(&self, tenant: &str) -> Result<KekRotation> {
        self.tenant_key(tenant, true).await?;
        let kek_version = self.provider.rotate(tenant).await.map_err(key_err)?;
        let path = Self::tenant_path(tenant)?;
        let aad = tenant_key_aad(tenant);
        for _ in 0..MAX_ATTEMPTS {
            let (mut record, etag) = self
                .read_record::<TenantRecord>(&path)
                .await?
                .ok_or_else(|| Error::not_found("no keys exist for the tenant"))?;
            let wrapped = record
                .wrapped
                .as_ref()
                .ok_or_else(|| enc("the tenant's keys were destroyed"))?;
            record.wrapped = Some(
                self.provider
                    .rewrap(tenant, wrapped, &aad)
                    .await
                    .map_err(key_err)?,
            );
            match self
                .write_record(&path, &record, PutMode::Update(etag))
                .await
            {
                Ok(()) => return Ok(KekRotation { kek_version }),
                Err(e) if e.code() == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "gave up re-wrapping the tenant key after repeated concurrent changes",
        ))
    }

    /// Crypto-shreds `tenant`: destroys its KEK, replaces its key records with a shredded
    /// marker and drops its cached keys. Every later read of its data fails with `Encryption`.
    pub async fn shred(&self, tenant: &str) -> Result<()> {
        self.provider.destroy(tenant).await.map_err(key_err)?;
        {
            let mut cache = self.cache.lock().expect("key cache poisoned");
            self.shredded
                .lock()
                .expect("shred list poisoned")
                .insert(tenant.to_string());
            cache.remove(tenant);
        }
        let marker = TenantRecord {
            format: 1,
            shredded: true,
            wrapped: None,
            created_at_ms: self.clock.now_ms(),
        };
        self.write_record(&Self::tenant_path(tenant)?, &marker, PutMode::Overwrite)
            .await?;
        let prefix = format!("k/{tenant}/n/");
        loop {
            let page = self.adapter.list(&prefix, None, 1000).await?;
            for entry in &page.entries {
                match self.adapter.delete(&entry.path, None).await {
                    Ok(()) => {}
                    Err(e) if e.code() == ErrorCode::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            if !page.more {
                break;
            }
        }
        Ok(())
    }

    fn check_not_shredded(&self, tenant: &str) -> Result<()> {
        if self
            .shredded
            .lock()
            .expect("shred list poisoned")
            .contains(tenant)
        {
            return Err(enc("the tenant's keys were destroyed (crypto-shredded)"));
        }
        Ok(())
    }

    /// Drops every cached key of `tenant` (for tests and operators).
    pub fn forget_tenant(&self, tenant: &str) {
        self.cache
            .lock()
            .expect("key cache poisoned")
            .remove(tenant);
    }

    fn forget_namespace(&self, tenant: &str, ns: &str) {
        if let Some(cached) = self
            .cache
            .lock()
            .expect("key cache poisoned")
            .get_mut(tenant)
        {
            cached.namespaces.remove(ns);
        }
    }
}
