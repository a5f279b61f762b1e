//! [`KeyManager`]: the tenant and namespace keys, persisted (wrapped) through the blob adapter,
//! cached in memory (zeroized on drop) and handed out per namespace.
//!
//! Records live beside the data, under paths no facade call can name:
//! `k/<tenant>/tenant` (the tenant key, wrapped by the tenant's KEK) and `k/<tenant>/n/<ns>`
//! (the namespace's data keys, one per epoch, each wrapped by the tenant key with the
//! sanctum-crypto format). Both are replaced with compare-and-swap, so concurrent processes
//! agree. Cached keys expire after a TTL (`[encryption] key_cache_ttl_ms`, default
//! [`CACHE_TTL`]) so other processes' rotations and shreds are seen within it; expired entries
//! are removed (and their keys wiped, once no operation holds them), and so is a tenant whose
//! record turns out shredded. A shred in this process drops the tenant's keys at once.
//!
//! A namespace key record (format 2) is authenticated under a key derived from the tenant key
//! (`integrity.rs`) and carries a record version that grows by one per write:
//! an edited record is refused, and so is an older authentic one once this process has seen a
//! newer one. Format 1 records (written before authentication existed) are refused until
//! [`KeyManager::upgrade`] authenticates them, once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::integrity::{AuthKey, HighWater, Mark, Purpose, Seen};
use super::{KeyProvider, WrappedKey, crypto_err, key_err};
use crate::adapters::json::{read_json, write_json};
use crate::adapters::{BlobAdapter, BlobPath, PutMode};
use crate::error::{Error, ErrorCode, Result};
use crate::observability::clock::{Clock, new_id};
use sanctum_crypto::{Context, DataKey, KeyRef, Suite};

/// How long unwrapped keys stay cached before the key store is read again, by default.
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
    /// The current tenant key, wrapped by the KEK.
    wrapped: Option<WrappedKey>,
    created_at_ms: u64,
    /// The current tenant key's generation: 1 for the first, one more per rotation.
    #[serde(default = "first_generation")]
    generation: u32,
    /// Older tenant keys, kept to open the data keys they wrapped and to verify the tags their
    /// derived keys made, until [`KeyManager::retire_tenant_keys`] drops them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    previous: Vec<PreviousTenantKey>,
}

/// An older tenant key (decrypt- and verify-only).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PreviousTenantKey {
    generation: u32,
    wrapped: WrappedKey,
}

fn first_generation() -> u32 {
    1
}

/// A tenant's keys in memory: the current tenant key and the older ones still kept.
pub(crate) struct TenantKeys {
    current: u32,
    keys: BTreeMap<u32, DataKey>,
}

impl TenantKeys {
    fn current(&self) -> &DataKey {
        &self.keys[&self.current]
    }

    /// The tenant key of `generation`, which must still be kept.
    fn get(&self, generation: u32) -> Result<&DataKey> {
        self.keys.get(&generation).ok_or_else(|| {
            enc(&format!(
                "a key record relies on tenant key generation {generation}, which is retired or \
                 unknown"
            ))
        })
    }
}

/// The format of namespace key records written now: authenticated, versioned, epoch states.
const NAMESPACE_FORMAT: u32 = 2;
/// The format written before key records were authenticated (read only by an upgrade).
const LEGACY_NAMESPACE_FORMAT: u32 = 1;

/// The life of a data-key epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochState {
    /// The epoch new writes use (exactly one per namespace).
    Active,
    /// Older data under it still reads; nothing new is written under it.
    DecryptOnly,
    /// Nothing under it is accepted any more: data claiming it fails with `Encryption`.
    Retired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct EpochRecord {
    epoch: u32,
    /// The data key, encrypted under the tenant key (sanctum-crypto message, hex).
    wrapped: String,
    created_at_ms: u64,
    /// Absent in format 1 (where every epoch decrypts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<EpochState>,
    /// The generation of the tenant key that wraps this data key.
    #[serde(default = "first_generation")]
    wrapped_by: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct NamespaceRecord {
    format: u32,
    key_id: String,
    /// Grows by one per write (format 2): with the high-water mark, an older authentic record
    /// is recognised.
    #[serde(default)]
    version: u64,
    current: u32,
    epochs: Vec<EpochRecord>,
    /// Set by the upgrade from format 1: version records written before authentication existed
    /// (untagged) are accepted until a complete re-encryption pass tags them all.
    #[serde(default)]
    legacy_manifests: bool,
    /// The generation of the tenant key whose derived key signs this record.
    #[serde(default = "first_generation")]
    signed_by: u32,
    /// The tenant key generation that tagged every version record of the namespace, as of the
    /// last complete re-encryption pass (or the namespace's creation); 0 when unknown.
    #[serde(default)]
    tags_generation: u32,
    /// The record's tag (format 2), over every other field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
}

impl NamespaceRecord {
    /// The bytes the tag covers: the record without its tag.
    fn signed_bytes(&self) -> Result<Vec<u8>> {
        let mut unsigned = self.clone();
        unsigned.mac = None;
        serde_json::to_vec(&unsigned)
            .map_err(|e| Error::consistency("cannot encode a key record").with_source(e))
    }

    fn sign(&mut self, auth: &AuthKey) -> Result<()> {
        let bytes = self.signed_bytes()?;
        self.mac = Some(auth.tag(&[b"namespace-key-record/v2", &bytes]));
        Ok(())
    }

    fn verify(&self, auth: &AuthKey) -> Result<()> {
        let Some(mac) = &self.mac else {
            return Err(enc(
                "the namespace key record is not authenticated (refused; was it edited?)",
            ));
        };
        if !auth.verify(&[b"namespace-key-record/v2", &self.signed_bytes()?], mac) {
            return Err(enc(
                "the namespace key record failed authentication: it was changed outside sanctum",
            ));
        }
        Ok(())
    }

    fn state_of(&self, epoch: &EpochRecord) -> EpochState {
        match epoch.state {
            Some(state) => state,
            None if epoch.epoch == self.current => EpochState::Active,
            None => EpochState::DecryptOnly,
        }
    }
}

/// One epoch of a namespace, as [`KeyManager::epochs`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EpochInfo {
    /// The epoch number.
    pub epoch: u32,
    /// Its state.
    pub state: EpochState,
    /// When it was created (ms since the Unix epoch).
    pub created_at_ms: u64,
}

/// What [`KeyManager::rotate_tenant_key`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantKeyRotation {
    /// The new tenant key's generation.
    pub generation: u32,
    /// The namespaces that got a new data-key epoch under it.
    pub namespaces: Vec<String>,
}

/// What [`KeyManager::upgrade`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyUpgradeReport {
    /// Namespace key records authenticated now (they were format 1).
    pub upgraded: Vec<String>,
    /// Namespace key records that were already authenticated.
    pub already_current: u64,
}

/// The data keys of one namespace: every epoch that still decrypts, which one new writes use,
/// and the key that authenticates the namespace's version records.
pub struct NamespaceKeys {
    key_id: String,
    current: u32,
    keys: BTreeMap<u32, DataKey>,
    retired: BTreeSet<u32>,
    versions_auth: AuthKey,
    /// Keys derived from older tenant keys: they verify tags made before a tenant-key rotation
    /// (never tag anything new).
    older_versions_auth: Vec<AuthKey>,
    legacy_manifests: bool,
    suite: Suite,
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
        if self.retired.contains(&key_ref.epoch) {
            return Err(Error::new(
                ErrorCode::Encryption,
                format!(
                    "encrypted data claims key epoch {}, which is retired: nothing under it is \
                     accepted",
                    key_ref.epoch
                ),
            ));
        }
        self.keys.get(&key_ref.epoch).ok_or_else(|| {
            Error::new(
                ErrorCode::Encryption,
                "encrypted data names an unknown key epoch",
            )
        })
    }

    /// Tags a version record (`parts`) with the key derived from the current tenant key (so
    /// it outlives every data-key epoch).
    pub(crate) fn tag_version(&self, parts: &[&[u8]]) -> String {
        self.versions_auth.tag(parts)
    }

    /// Whether `tag` is the tag of `parts` under the current tenant key's derived key, or under
    /// one of an older tenant key still kept.
    pub(crate) fn verify_version(&self, parts: &[&[u8]], tag: &str) -> bool {
        self.versions_auth.verify(parts, tag)
            || self
                .older_versions_auth
                .iter()
                .any(|auth| auth.verify(parts, tag))
    }

    /// The suite new messages are sealed with.
    pub(crate) fn suite(&self) -> Suite {
        self.suite
    }

    /// Whether untagged version records (written before authentication existed) are accepted.
    pub(crate) fn legacy_manifests(&self) -> bool {
        self.legacy_manifests
    }
}

struct CachedTenant {
    loaded: Instant,
    tenant_key: Arc<TenantKeys>,
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
    /// The newest key records and version chains this process has seen.
    high_water: HighWater,
    /// How long cached keys stay valid.
    ttl: Duration,
    /// The suite new messages are sealed with.
    suite: Suite,
    /// When expired entries of every tenant were last removed.
    last_sweep: Mutex<Instant>,
}

/// What [`KeyManager::cached`] reports: which keys this process holds in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedKeys {
    /// The tenant.
    pub tenant: String,
    /// The namespaces whose data keys are cached.
    pub namespaces: Vec<String>,
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

/// Length-prefixed associated data binding a wrapped tenant key to its tenant and generation
/// (the first generation's has no generation part: it predates rotation).
fn tenant_key_aad(tenant: &str, generation: u32) -> Vec<u8> {
    let generation = format!("generation-{generation}");
    let mut parts = vec!["sanctum-storage/v1", "tenant-key", tenant];
    if generation != "generation-1" {
        parts.push(&generation);
    }
    let mut out = Vec::new();
    for part in parts {
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

/// The key that authenticates the key record of `ns`.
fn record_auth(tenant_key: &DataKey, tenant: &str, ns: &str) -> AuthKey {
    AuthKey::derive(tenant_key, Purpose::KeyRecord, tenant, ns)
}

/// The provider counter that holds the newest version of the key record of `ns`.
fn counter_name(ns: &str) -> String {
    format!("namespace-key-record/{ns}")
}

/// The high-water mark name of the key record of `ns`.
fn record_mark(tenant: &str, ns: &str) -> String {
    format!("k/{tenant}/n/{ns}")
}

/// Opens the wrapped data keys of `epochs` (AEAD under the tenant key, bound to tenant,
/// namespace, key id and epoch). The plaintext copies are wiped.
fn unwrap_epochs(
    tenant: &str,
    ns: &str,
    tenant_keys: &TenantKeys,
    key_id: &str,
    epochs: &[&EpochRecord],
) -> Result<BTreeMap<u32, DataKey>> {
    let mut keys = BTreeMap::new();
    for epoch in epochs {
        let tenant_key = tenant_keys.get(epoch.wrapped_by)?;
        let message = unhex(&epoch.wrapped)?;
        let key_epoch = format!("{key_id}.{}", epoch.epoch);
        let ctx = dek_context(tenant, ns, &key_epoch);
        let plain =
            crate::crypto::decrypt_message(tenant_key, &ctx, &message).map_err(crypto_err)?;
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        if plain.len() != bytes.len() {
            return Err(enc("a wrapped data key has the wrong length"));
        }
        bytes.copy_from_slice(&plain);
        keys.insert(epoch.epoch, DataKey::from_bytes(*bytes));
    }
    Ok(keys)
}

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
            high_water: HighWater::default(),
            ttl: CACHE_TTL,
            suite: Suite::default(),
            last_sweep: Mutex::new(Instant::now()),
        }
    }

    /// Sets how long unwrapped keys stay cached (default [`CACHE_TTL`]).
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the suite new messages are sealed with (default: Cobblestone-256, 0x0001).
    pub fn with_suite(mut self, suite: Suite) -> Self {
        self.suite = suite;
        self
    }

    /// Which tenants and namespaces have keys in this process's memory, sorted (for tests and
    /// diagnostics). It only looks: expired entries go on the next key lookup.
    pub fn cached(&self) -> Vec<CachedKeys> {
        let cache = self.cache.lock().expect("key cache poisoned");
        let mut out: Vec<CachedKeys> = cache
            .iter()
            .map(|(tenant, cached)| {
                let mut namespaces: Vec<String> = cached.namespaces.keys().cloned().collect();
                namespaces.sort();
                CachedKeys {
                    tenant: tenant.clone(),
                    namespaces,
                }
            })
            .collect();
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        out
    }

    /// Removes the expired entries of every tenant, at most once per TTL. Dropping an entry
    /// wipes its keys once no operation holds them.
    fn sweep_expired(&self, cache: &mut HashMap<String, CachedTenant>) {
        let mut last = self.last_sweep.lock().expect("sweep time poisoned");
        if last.elapsed() < self.ttl {
            return;
        }
        *last = Instant::now();
        let ttl = self.ttl;
        cache.retain(|_, cached| {
            cached
                .namespaces
                .retain(|_, (loaded, _)| loaded.elapsed() < ttl);
            cached.loaded.elapsed() < ttl
        });
    }

    /// The per-process high-water marks (key records and version chains).
    pub(crate) fn high_water(&self) -> &HighWater {
        &self.high_water
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

    /// The tenant's keys, creating them on first use when `create` is set.
    async fn tenant_key(&self, tenant: &str, create: bool) -> Result<Arc<TenantKeys>> {
        self.check_not_shredded(tenant)?;
        {
            let mut cache = self.cache.lock().expect("key cache poisoned");
            self.sweep_expired(&mut cache);
            match cache.get(tenant) {
                Some(cached) if cached.loaded.elapsed() < self.ttl => {
                    return Ok(cached.tenant_key.clone());
                }
                // Expired: its keys go now, not when the store is read again.
                Some(_) => drop(cache.remove(tenant)),
                None => {}
            }
        }
        let path = Self::tenant_path(tenant)?;
        for _ in 0..MAX_ATTEMPTS {
            match self.read_record::<TenantRecord>(&path).await? {
                Some((record, _)) if record.shredded => {
                    // Another process shredded the tenant: wipe whatever of it is cached.
                    self.forget_tenant(tenant);
                    return Err(enc("the tenant's keys were destroyed (crypto-shredded)"));
                }
                Some((record, _)) => {
                    let wrapped = record
                        .wrapped
                        .as_ref()
                        .ok_or_else(|| enc("the tenant key record has no key"))?;
                    let mut keys = BTreeMap::new();
                    let all = std::iter::once((record.generation, wrapped))
                        .chain(record.previous.iter().map(|p| (p.generation, &p.wrapped)));
                    for (generation, wrapped) in all {
                        let aad = tenant_key_aad(tenant, generation);
                        let key = self
                            .provider
                            .unwrap(tenant, wrapped, &aad)
                            .await
                            .map_err(key_err)?;
                        keys.insert(generation, DataKey::from_bytes(*key));
                    }
                    let key = Arc::new(TenantKeys {
                        current: record.generation,
                        keys,
                    });
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
                        .wrap(tenant, key.as_bytes(), &tenant_key_aad(tenant, 1))
                        .await
                        .map_err(key_err)?;
                    let record = TenantRecord {
                        format: 1,
                        shredded: false,
                        wrapped: Some(wrapped),
                        created_at_ms: self.clock.now_ms(),
                        generation: 1,
                        previous: Vec::new(),
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
        if let Some(cached) = self
            .cache
            .lock()
            .expect("key cache poisoned")
            .get_mut(tenant)
            && let Some((loaded, keys)) = cached.namespaces.get(ns)
        {
            if loaded.elapsed() < self.ttl && cached.loaded.elapsed() < self.ttl {
                return Ok(keys.clone());
            }
            cached.namespaces.remove(ns);
        }
        let tenant_key = self.tenant_key(tenant, create).await?;
        let path = Self::namespace_path(tenant, ns)?;
        for _ in 0..MAX_ATTEMPTS {
            let before = self.high_water.mark(&record_mark(tenant, ns));
            match self.read_record::<NamespaceRecord>(&path).await? {
                Some((record, _)) => {
                    let keys = Arc::new(
                        self.open_namespace(tenant, ns, &tenant_key, &record, before.as_ref())
                            .await?,
                    );
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
                    let mut record = NamespaceRecord {
                        format: NAMESPACE_FORMAT,
                        key_id,
                        version: 1,
                        current: 1,
                        epochs: vec![first],
                        legacy_manifests: false,
                        signed_by: tenant_key.current,
                        tags_generation: tenant_key.current,
                        mac: None,
                    };
                    record.sign(&record_auth(tenant_key.current(), tenant, ns))?;
                    match self.write_record(&path, &record, PutMode::Create).await {
                        // Re-read: ours, or a concurrent creator's.
                        Ok(()) => self.raise_counter(tenant, ns, record.version).await?,
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
        tenant_keys: &TenantKeys,
        key_id: &str,
        epoch: u32,
    ) -> Result<EpochRecord> {
        let tenant_key = tenant_keys.current();
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
            state: Some(EpochState::Active),
            wrapped_by: tenant_keys.current,
        })
    }

    /// Checks `record` (format, tag, freshness) and unwraps the data keys of its epochs that
    /// still decrypt.
    async fn open_namespace(
        &self,
        tenant: &str,
        ns: &str,
        tenant_key: &TenantKeys,
        record: &NamespaceRecord,
        before: Option<&Mark>,
    ) -> Result<NamespaceKeys> {
        self.check_record(tenant, ns, tenant_key, record, before)
            .await?;
        let usable: Vec<&EpochRecord> = record
            .epochs
            .iter()
            .filter(|e| record.state_of(e) != EpochState::Retired)
            .collect();
        let keys = unwrap_epochs(tenant, ns, tenant_key, &record.key_id, &usable)?;
        if !keys.contains_key(&record.current) {
            return Err(Error::consistency(
                "the namespace key record lacks its current epoch",
            ));
        }
        Ok(NamespaceKeys {
            key_id: record.key_id.clone(),
            current: record.current,
            keys,
            retired: record
                .epochs
                .iter()
                .filter(|e| record.state_of(e) == EpochState::Retired)
                .map(|e| e.epoch)
                .collect(),
            versions_auth: AuthKey::derive(
                tenant_key.current(),
                Purpose::VersionRecords,
                tenant,
                ns,
            ),
            older_versions_auth: tenant_key
                .keys
                .iter()
                .filter(|(generation, _)| **generation != tenant_key.current)
                .map(|(_, key)| AuthKey::derive(key, Purpose::VersionRecords, tenant, ns))
                .collect(),
            legacy_manifests: record.legacy_manifests,
            suite: self.suite,
        })
    }

    /// Refuses a record that is unauthenticated, edited, or older than one this process had
    /// seen before it read this one (`before`, the mark taken then).
    async fn check_record(
        &self,
        tenant: &str,
        ns: &str,
        tenant_key: &TenantKeys,
        record: &NamespaceRecord,
        before: Option<&Mark>,
    ) -> Result<()> {
        match record.format {
            NAMESPACE_FORMAT => {}
            LEGACY_NAMESPACE_FORMAT => {
                return Err(Error::new(
                    ErrorCode::Encryption,
                    format!(
                        "the key record of namespace '{ns}' predates authenticated key records: \
                         run `sanctum keys upgrade` once to authenticate it"
                    ),
                ));
            }
            other => {
                return Err(Error::consistency(format!(
                    "the key record of namespace '{ns}' has unknown format {other}"
                )));
            }
        }
        record.verify(&record_auth(tenant_key.get(record.signed_by)?, tenant, ns))?;
        if let Seen::RolledBack { seen } = self.high_water.observe(
            &record_mark(tenant, ns),
            before,
            &record.key_id,
            record.version,
        ) {
            return Err(enc(&format!(
                "the key record of namespace '{ns}' was rolled back to version {} after this \
                 process saw version {seen}",
                record.version
            )));
        }
        // Trusted state outside the backend, where the provider keeps it: catches a rollback in
        // a process that never saw the newer record.
        if self.provider.keeps_counters() {
            let trusted = self
                .provider
                .counter(tenant, &counter_name(ns))
                .await
                .map_err(key_err)?;
            if record.version < trusted {
                return Err(enc(&format!(
                    "the key record of namespace '{ns}' was rolled back to version {}: the key \
                     provider has seen version {trusted}",
                    record.version
                )));
            }
        }
        Ok(())
    }

    /// Records the version of a key record just written in the provider's counter (after the
    /// write: a counter ahead of the record would refuse it for good).
    async fn raise_counter(&self, tenant: &str, ns: &str, version: u64) -> Result<()> {
        if self.provider.keeps_counters() {
            self.provider
                .raise_counter(tenant, &counter_name(ns), version)
                .await
                .map_err(key_err)?;
        }
        Ok(())
    }

    /// Reads, checks and changes the key record of `ns` with `change`, then writes it back
    /// signed, with its version one higher (compare-and-swap; retried on a lost race).
    async fn update_record<T>(
        &self,
        tenant: &str,
        ns: &str,
        what: &str,
        mut change: impl FnMut(&mut NamespaceRecord, &TenantKeys) -> Result<T>,
    ) -> Result<T> {
        let path = Self::namespace_path(tenant, ns)?;
        let no_keys = || {
            Error::not_found(format!(
                "namespace '{ns}' has no keys to {what}: nothing has been stored in it"
            ))
        };
        // A namespace that never stored anything has no key to change: saying so catches a
        // mistyped name, where creating keys for it would hide the mistake.
        if self.read_record::<NamespaceRecord>(&path).await?.is_none() {
            return Err(no_keys());
        }
        let tenant_key = self.tenant_key(tenant, false).await?;
        for _ in 0..MAX_ATTEMPTS {
            let before = self.high_water.mark(&record_mark(tenant, ns));
            let Some((mut record, etag)) = self.read_record::<NamespaceRecord>(&path).await? else {
                return Err(no_keys());
            };
            self.check_record(tenant, ns, &tenant_key, &record, before.as_ref())
                .await?;
            let out = change(&mut record, &tenant_key)?;
            record.version += 1;
            record.signed_by = tenant_key.current;
            record.sign(&record_auth(tenant_key.current(), tenant, ns))?;
            match self
                .write_record(&path, &record, PutMode::Update(etag))
                .await
            {
                Ok(()) => {
                    self.high_water.observe(
                        &record_mark(tenant, ns),
                        None,
                        &record.key_id,
                        record.version,
                    );
                    self.forget_namespace(tenant, ns);
                    self.raise_counter(tenant, ns, record.version).await?;
                    return Ok(out);
                }
                Err(e) if e.code() == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!(
            "gave up trying to {what} the namespace key after repeated concurrent changes"
        )))
    }

    /// Adds a data-key epoch to `ns`: new writes use it; data under older epochs stays readable
    /// (they become decrypt-only).
    pub async fn rotate_namespace(&self, tenant: &str, ns: &str) -> Result<u32> {
        self.update_record(tenant, ns, "rotate", |record, tenant_key| {
            let epoch = record.epochs.iter().map(|e| e.epoch).max().unwrap_or(0) + 1;
            for e in &mut record.epochs {
                if e.state != Some(EpochState::Retired) {
                    e.state = Some(EpochState::DecryptOnly);
                }
            }
            let next = self.new_epoch(tenant, ns, tenant_key, &record.key_id, epoch)?;
            record.epochs.push(next);
            record.current = epoch;
            Ok(epoch)
        })
        .await
    }

    /// The epochs of `ns` and their states, oldest first.
    pub async fn epochs(&self, tenant: &str, ns: &str) -> Result<Vec<EpochInfo>> {
        let path = Self::namespace_path(tenant, ns)?;
        let tenant_key = self.tenant_key(tenant, false).await?;
        let before = self.high_water.mark(&record_mark(tenant, ns));
        let Some((record, _)) = self.read_record::<NamespaceRecord>(&path).await? else {
            return Err(Error::not_found(format!(
                "namespace '{ns}' has no keys: nothing has been stored in it"
            )));
        };
        self.check_record(tenant, ns, &tenant_key, &record, before.as_ref())
            .await?;
        Ok(record
            .epochs
            .iter()
            .map(|e| EpochInfo {
                epoch: e.epoch,
                state: record.state_of(e),
                created_at_ms: e.created_at_ms,
            })
            .collect())
    }

    /// Retires `epochs` of `ns` (never the active one): from now on data under them, or
    /// claiming them, fails with `Encryption`. The caller checks that no data needs them.
    /// Returns the epochs retired now (already retired ones are skipped).
    pub(crate) async fn retire_epochs(
        &self,
        tenant: &str,
        ns: &str,
        epochs: &[u32],
    ) -> Result<Vec<u32>> {
        self.update_record(tenant, ns, "retire", |record, _| {
            let mut retired = Vec::new();
            for &epoch in epochs {
                if epoch == record.current {
                    return Err(Error::invalid(format!(
                        "epoch {epoch} is the active epoch of '{ns}' and cannot be retired: \
                         rotate first"
                    )));
                }
                let Some(e) = record.epochs.iter_mut().find(|e| e.epoch == epoch) else {
                    return Err(Error::not_found(format!(
                        "namespace '{ns}' has no key epoch {epoch}"
                    )));
                };
                if e.state != Some(EpochState::Retired) {
                    e.state = Some(EpochState::Retired);
                    retired.push(epoch);
                }
            }
            Ok(retired)
        })
        .await
    }

    /// Records that a complete re-encryption pass tagged every version record of `ns` with
    /// the current tenant key's derived key: untagged records are refused from now on, and
    /// older tenant keys are no longer needed for this namespace's tags.
    pub(crate) async fn mark_retagged(&self, tenant: &str, ns: &str) -> Result<()> {
        let generation = self.tenant_key(tenant, false).await?.current;
        let path = Self::namespace_path(tenant, ns)?;
        if let Some((record, _)) = self.read_record::<NamespaceRecord>(&path).await?
            && !record.legacy_manifests
            && record.tags_generation == generation
        {
            return Ok(());
        }
        self.update_record(tenant, ns, "update", |record, tenant_keys| {
            record.legacy_manifests = false;
            record.tags_generation = tenant_keys.current;
            Ok(())
        })
        .await
    }

    /// Authenticates every namespace key record of `tenant` written before key records were
    /// authenticated (format 1): each is checked (every epoch's wrapped key must open under the
    /// tenant key) and rewritten as format 2. Untagged version records in those namespaces stay
    /// readable until `keys reencrypt` tags them. Run it once, on a store you trust as it is:
    /// it authenticates what it finds.
    pub async fn upgrade(&self, tenant: &str) -> Result<KeyUpgradeReport> {
        let tenant_key = self.tenant_key(tenant, false).await?;
        let mut report = KeyUpgradeReport::default();
        for ns in self.namespaces_of(tenant).await? {
            if self.upgrade_namespace(tenant, &ns, &tenant_key).await? {
                report.upgraded.push(ns);
            } else {
                report.already_current += 1;
            }
        }
        Ok(report)
    }

    /// Upgrades one record; false when it is format 2 already.
    async fn upgrade_namespace(
        &self,
        tenant: &str,
        ns: &str,
        tenant_key: &TenantKeys,
    ) -> Result<bool> {
        let path = Self::namespace_path(tenant, ns)?;
        for _ in 0..MAX_ATTEMPTS {
            let before = self.high_water.mark(&record_mark(tenant, ns));
            let Some((mut record, etag)) = self.read_record::<NamespaceRecord>(&path).await? else {
                return Ok(false);
            };
            if record.format != LEGACY_NAMESPACE_FORMAT {
                self.check_record(tenant, ns, tenant_key, &record, before.as_ref())
                    .await?;
                return Ok(false);
            }
            let all: Vec<&EpochRecord> = record.epochs.iter().collect();
            unwrap_epochs(tenant, ns, tenant_key, &record.key_id, &all)?;
            if !record.epochs.iter().any(|e| e.epoch == record.current) {
                return Err(Error::consistency(format!(
                    "the key record of namespace '{ns}' lacks its current epoch"
                )));
            }
            let current = record.current;
            for e in &mut record.epochs {
                e.state = Some(if e.epoch == current {
                    EpochState::Active
                } else {
                    EpochState::DecryptOnly
                });
            }
            record.format = NAMESPACE_FORMAT;
            record.version = 1;
            record.legacy_manifests = true;
            record.signed_by = tenant_key.current;
            record.tags_generation = 0;
            record.sign(&record_auth(tenant_key.current(), tenant, ns))?;
            match self
                .write_record(&path, &record, PutMode::Update(etag))
                .await
            {
                Ok(()) => {
                    self.forget_namespace(tenant, ns);
                    self.raise_counter(tenant, ns, record.version).await?;
                    return Ok(true);
                }
                Err(e) if e.code() == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "gave up upgrading a namespace key record after repeated concurrent changes",
        ))
    }

    /// Reads the tenant record of `tenant`, changes it with `change`, and writes it back
    /// (compare-and-swap, retried on a lost race). `change` returns its result and whether it
    /// changed the record; nothing is written when it did not.
    async fn update_tenant_record<T>(
        &self,
        tenant: &str,
        what: &str,
        mut change: impl AsyncFnMut(&mut TenantRecord) -> Result<(T, bool)>,
    ) -> Result<T> {
        let path = Self::tenant_path(tenant)?;
        for _ in 0..MAX_ATTEMPTS {
            let (mut record, etag) = self
                .read_record::<TenantRecord>(&path)
                .await?
                .ok_or_else(|| Error::not_found("no keys exist for the tenant"))?;
            let (out, changed) = change(&mut record).await?;
            if !changed {
                return Ok(out);
            }
            match self
                .write_record(&path, &record, PutMode::Update(etag))
                .await
            {
                Ok(()) => return Ok(out),
                Err(e) if e.code() == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(format!(
            "gave up trying to {what} after repeated concurrent changes"
        )))
    }

    /// Rotates the tenant's KEK and re-wraps the tenant key under the new version. No data and
    /// no data key is rewritten.
    pub async fn rotate_kek(&self, tenant: &str) -> Result<KekRotation> {
        self.tenant_key(tenant, true).await?;
        let kek_version = self.provider.rotate(tenant).await.map_err(key_err)?;
        self.update_tenant_record(tenant, "re-wrap the tenant key", async |record| {
            let wrapped = record
                .wrapped
                .as_ref()
                .ok_or_else(|| enc("the tenant's keys were destroyed"))?;
            let aad = tenant_key_aad(tenant, record.generation);
            record.wrapped = Some(
                self.provider
                    .rewrap(tenant, wrapped, &aad)
                    .await
                    .map_err(key_err)?,
            );
            // Older tenant keys too: the old KEK version may be destroyed later.
            for previous in &mut record.previous {
                let aad = tenant_key_aad(tenant, previous.generation);
                previous.wrapped = self
                    .provider
                    .rewrap(tenant, &previous.wrapped, &aad)
                    .await
                    .map_err(key_err)?;
            }
            Ok((KekRotation { kek_version }, true))
        })
        .await
    }

    /// Rotates the tenant key: a new one (the next generation), wrapped by the KEK, wraps every
    /// data-key epoch from now on, and each namespace of the tenant gets a new epoch under it.
    /// The old tenant key stays decrypt- and verify-only (old epochs, old tags) until
    /// [`retire_tenant_keys`](Self::retire_tenant_keys). Returns the new generation and the
    /// namespaces rotated.
    pub async fn rotate_tenant_key(&self, tenant: &str) -> Result<TenantKeyRotation> {
        self.tenant_key(tenant, true).await?;
        let generation = self
            .update_tenant_record(tenant, "rotate the tenant key", async |record| {
                let current = record
                    .wrapped
                    .take()
                    .ok_or_else(|| enc("the tenant's keys were destroyed"))?;
                let next = record.generation + 1;
                let key = DataKey::generate().map_err(crypto_err)?;
                let wrapped = self
                    .provider
                    .wrap(tenant, key.as_bytes(), &tenant_key_aad(tenant, next))
                    .await
                    .map_err(key_err)?;
                record.previous.push(PreviousTenantKey {
                    generation: record.generation,
                    wrapped: current,
                });
                record.wrapped = Some(wrapped);
                record.generation = next;
                Ok((next, true))
            })
            .await?;
        self.forget_tenant(tenant);
        // Every namespace gets an epoch under the new tenant key, so no new data key is ever
        // wrapped by the old one.
        let mut namespaces = Vec::new();
        for ns in self.namespaces_of(tenant).await? {
            self.rotate_namespace(tenant, &ns).await?;
            namespaces.push(ns);
        }
        Ok(TenantKeyRotation {
            generation,
            namespaces,
        })
    }

    /// Drops the older tenant keys of `tenant` for good. Refused (`Conflict`, naming the
    /// namespace and what to run) while a namespace still has a usable epoch they wrap, or
    /// version records their derived keys tagged (a re-encryption pass since the rotation
    /// re-tags them). Returns the generations dropped.
    pub async fn retire_tenant_keys(&self, tenant: &str) -> Result<Vec<u32>> {
        let keys = self.tenant_key(tenant, false).await?;
        let current = keys.current;
        for ns in self.namespaces_of(tenant).await? {
            let path = Self::namespace_path(tenant, &ns)?;
            let before = self.high_water.mark(&record_mark(tenant, &ns));
            let Some((record, _)) = self.read_record::<NamespaceRecord>(&path).await? else {
                continue;
            };
            self.check_record(tenant, &ns, &keys, &record, before.as_ref())
                .await?;
            if let Some(e) = record
                .epochs
                .iter()
                .find(|e| e.wrapped_by != current && record.state_of(e) != EpochState::Retired)
            {
                return Err(Error::conflict(format!(
                    "namespace '{ns}' still uses epoch {} under an older tenant key: run \
                     `sanctum keys reencrypt {ns}` and `sanctum keys retire {ns}` first",
                    e.epoch
                )));
            }
            if record.tags_generation != current {
                return Err(Error::conflict(format!(
                    "the version history of namespace '{ns}' was tagged under an older tenant \
                     key: run `sanctum keys reencrypt {ns}` first"
                )));
            }
        }
        let dropped = self
            .update_tenant_record(tenant, "retire tenant keys", async |record| {
                if record.generation != current {
                    return Err(Error::conflict(
                        "the tenant key was rotated meanwhile: run the retirement again",
                    ));
                }
                let dropped: Vec<u32> = record.previous.iter().map(|p| p.generation).collect();
                record.previous.clear();
                let changed = !dropped.is_empty();
                Ok((dropped, changed))
            })
            .await?;
        if !dropped.is_empty() {
            self.forget_tenant(tenant);
        }
        Ok(dropped)
    }

    /// The namespaces of `tenant` that have key records.
    async fn namespaces_of(&self, tenant: &str) -> Result<Vec<String>> {
        let prefix = format!("k/{tenant}/n/");
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.adapter.list(&prefix, after.as_deref(), 1000).await?;
            out.extend(
                page.entries
                    .iter()
                    .map(|e| e.path.as_str()[prefix.len()..].to_string()),
            );
            match page.entries.last() {
                Some(last) if page.more => after = Some(last.path.as_str().to_string()),
                _ => return Ok(out),
            }
        }
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
            generation: 1,
            previous: Vec::new(),
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
