//! The local keyring: KEKs in a JSON file, for development.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{
    KEY_LEN, KeyError, KeyErrorKind, KeyProvider, WrappedKey, bound_context, check_aad,
    check_provider, validate_tenant,
};

const KIND: &str = "local-keyring";
const FORMAT: &str = "sanctum-keys/local-keyring/v1";
const TAG_LEN: usize = 16;
/// `nonce || sealed key || tag`.
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;
/// Refuse to parse keyring files larger than this (a keyring of 10k tenants is ~1 MiB).
const MAX_FILE_LEN: u64 = 64 * 1024 * 1024;

static WARNED: AtomicBool = AtomicBool::new(false);

/// A development keyring: per-tenant AES-256-GCM KEKs in a JSON file.
///
/// **Development only** ([`KeyProvider::is_development`] is `true`): the KEKs sit unencrypted in a
/// file, usually next to the data they protect. Opening one logs a `tracing` warning once per process.
///
/// # The file
///
/// - JSON: `{"format": "sanctum-keys/local-keyring/v1", "tenants": {"<tenant>": {"versions":
///   ["<base64 KEK v1>", ...], "destroyed": false}}}`. KEK version `n` is `versions[n - 1]`; each KEK
///   is 32 random bytes from `ring`'s `SystemRandom`.
/// - Created on first write with mode `0600` (its directory, if missing, with `0700`).
/// - **File checks:** the keyring, its lock file and the temporary files of writes are opened with
///   `O_NOFOLLOW`, so a symlink at the path fails the open itself (even one swapped in after a
///   check), and are then checked on the open descriptor (`fstat`): a regular file, owned by this
///   process's user, that group or others cannot access in any way (`mode & 0o077 == 0`; fix it
///   with `chmod 600`). Anything else is refused with [`KeyErrorKind::Permanent`], at
///   [`LocalKeyring::open`] and on every load and write.
/// - **Folder checks:** an existing folder that holds the keyring must be owned by this user or
///   root, and group and others must not be able to write to it (`mode & 0o022 == 0`; fix it with
///   `chmod 700`), since whoever can write to it can swap the keyring. Refused with
///   [`KeyErrorKind::Permanent`] like the file. Ancestors of that folder are not checked.
/// - Every change is a read-modify-write under an in-process `tokio` mutex and an exclusive OS lock
///   (`flock`) on `<path>.lock`, and is written atomically (temporary file, `fsync`, `rename`,
///   `fsync` of the directory). So two keyrings on the same file, in one process or in two, never
///   lose each other's tenants or versions. Reads take no lock: a rename is atomic, and a
///   keyring that is only read (on a read-only file system, say) is never opened for writing.
/// - A writer killed between creating its temporary file (`.<name>.tmp-<pid>-<random>`, next to
///   the keyring) and the rename leaves that file behind; [`LocalKeyring::sweep_temp_files`]
///   removes such files.
///
/// # Wrapping
///
/// AES-256-GCM (`ring`) under the tenant's newest KEK, with a random 96-bit nonce and
/// [`bound_context`]`(tenant, aad)` as associated data; [`WrappedKey::ciphertext`] is
/// `base64(nonce || sealed key || tag)`. `rewrap` unwraps and wraps again in-process.
///
/// # Destruction
///
/// `destroy` removes (and zeroizes in memory) every KEK version of the tenant and records the tenant
/// as destroyed: later `unwrap`, `rewrap`, `rotate` and `wrap` fail with [`KeyErrorKind::Destroyed`].
/// A destroyed tenant id cannot be used again; a tenant that is re-created needs a new id. Removed key
/// bytes may survive in older copies of the file (backups, snapshots, unreclaimed disk blocks): one
/// more reason this keyring is for development only.
///
/// # Memory
///
/// KEKs and unwrapped keys are held in [`Zeroizing`] buffers or structs that zeroize on drop; copies
/// inside `serde_json` and `ring` (its AES key schedule) are not zeroized.
#[derive(Debug)]
pub struct LocalKeyring {
    path: PathBuf,
    lock_path: PathBuf,
    write_lock: tokio::sync::Mutex<()>,
    rng: SystemRandom,
}

#[derive(Serialize, Deserialize)]
struct KeyringFile {
    format: String,
    #[serde(default)]
    tenants: BTreeMap<String, TenantRecord>,
    /// Monotonic counters per tenant and name ([`KeyProvider::raise_counter`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    counters: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Default for KeyringFile {
    fn default() -> Self {
        KeyringFile {
            format: FORMAT.to_string(),
            tenants: BTreeMap::new(),
            counters: BTreeMap::new(),
        }
    }
}

#[derive(Default, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
struct TenantRecord {
    /// Base64 KEKs; version `n` is `versions[n - 1]`.
    #[serde(default)]
    versions: Vec<String>,
    /// Set by `destroy`, never cleared.
    #[serde(default)]
    destroyed: bool,
}

impl LocalKeyring {
    /// Opens the keyring file at `path` (created on first write).
    ///
    /// Checks an existing file and its folder now (see "File checks" and "Folder checks" above,
    /// and valid JSON of this format), so a bad keyring fails at startup. Logs a development-only warning once
    /// per process.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref().to_path_buf();
        if path.file_name().is_none() {
            return Err(KeyError::new(
                KeyErrorKind::Permanent,
                format!("keyring path {} has no file name", path.display()),
            ));
        }
        let lock_path = lock_path_of(&path);
        // Fail early on a bad existing file.
        load(&path)?;
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %path.display(),
                "using the local keyring: for development only, its KEKs are stored unencrypted \
                 next to the data; use a KMS such as OpenBao Transit in production"
            );
        }
        Ok(LocalKeyring {
            path,
            lock_path,
            write_lock: tokio::sync::Mutex::new(()),
            rng: SystemRandom::new(),
        })
    }

    /// The keyring file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the keyring file at `from` to `to`, for a keyring whose default place changed.
    /// Returns whether it moved one. Never overwrites or drops a keyring:
    ///
    /// - nothing at `from`: nothing to do (`Ok(false)`), and nothing is created;
    /// - `from` is checked like any keyring (its folder, an `O_NOFOLLOW` open, owner, mode,
    ///   format) before it moves, and `to`'s folder is created (mode 0700) or checked;
    /// - under the exclusive locks of both places, `from` is renamed to `to`, atomically. Across
    ///   file systems it is copied instead (a temporary file, `fsync`, `rename`), then removed;
    ///   the lock file next to `from` is removed too;
    /// - a keyring at both places is refused with [`KeyErrorKind::Permanent`], naming both, unless
    ///   the two hold the same bytes (a copy cut short before `from` was removed): then `from`
    ///   is removed.
    ///
    /// Logs a `tracing` warning when it moves one.
    pub fn relocate(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<bool, KeyError> {
        let (from, to) = (from.as_ref(), to.as_ref());
        for path in [from, to] {
            if path.file_name().is_none() {
                return Err(KeyError::new(
                    KeyErrorKind::Permanent,
                    format!("keyring path {} has no file name", path.display()),
                ));
            }
        }
        if from == to {
            return Ok(false);
        }
        // Nothing to move: no locks taken and no folder created.
        match fs::symlink_metadata(from) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error("reading", from, e)),
        }
        let from_lock_path = lock_path_of(from);
        let from_lock = lock(&from_lock_path)?;
        let to_lock = lock(&lock_path_of(to))?;
        let Some(bytes) = read_bytes(from)? else {
            // Another process moved it first (and removed the lock file this one re-created).
            let _ = fs::remove_file(&from_lock_path);
            return Ok(false);
        };
        parse(from, &bytes)?;
        let (from_dir, to_dir) = (parent_dir(from), parent_dir(to));
        let to_exists = match fs::symlink_metadata(to) {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(io_error("reading", to, e)),
        };
        let how = if to_exists {
            let same = matches!(read_bytes(to), Ok(Some(ref b)) if b[..] == bytes[..]);
            if !same {
                return Err(KeyError::new(
                    KeyErrorKind::Permanent,
                    format!(
                        "there is a keyring at {} and another at {}, where it would move: \
                         refusing to pick one, since either may hold keys the data needs; keep \
                         the right one at {} and move {} out of the way (delete it only once all \
                         data reads)",
                        from.display(),
                        to.display(),
                        to.display(),
                        from.display()
                    ),
                ));
            }
            fs::remove_file(from).map_err(|e| io_error("removing", from, e))?;
            "finished an interrupted copy"
        } else {
            match fs::rename(from, to) {
                Ok(()) => {
                    sync_dir(&to_dir)?;
                    "renamed"
                }
                Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                    write_atomic(to, &bytes)?;
                    fs::remove_file(from).map_err(|e| io_error("removing", from, e))?;
                    "copied across file systems"
                }
                Err(e) => return Err(io_error("moving", from, e)),
            }
        };
        // The old lock is of no use any more; nobody waits on it but writers of the old place.
        let _ = fs::remove_file(&from_lock_path);
        sync_dir(&from_dir)?;
        drop((to_lock, from_lock));
        tracing::warn!(
            from = %from.display(),
            to = %to.display(),
            how,
            "moved the local keyring to its new place"
        );
        Ok(true)
    }

    /// Removes the temporary files that writers of the keyring at `path` left in its folder when
    /// they were killed mid-write (`.<name>.tmp-*`), if last written at least `older_than` ago.
    /// Returns how many it removed and their total size in bytes. A missing folder has none.
    ///
    /// A short `older_than` can break a write of another process still under way.
    pub fn sweep_temp_files(
        path: impl AsRef<Path>,
        older_than: Duration,
    ) -> io::Result<(u64, u64)> {
        let path = path.as_ref();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut stem = std::ffi::OsString::from(".");
        stem.push(path.file_name().unwrap_or_default());
        stem.push(".tmp-");
        let stem = stem.into_encoded_bytes();
        let read = match fs::read_dir(dir) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
            Err(e) => return Err(e),
        };
        let now = SystemTime::now();
        let (mut files, mut bytes) = (0, 0);
        for entry in read {
            let entry = entry?;
            if !entry.file_name().into_encoded_bytes().starts_with(&stem) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let old = meta
                .modified()
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= older_than);
            if !meta.is_file() || !old {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    files += 1;
                    bytes += meta.len();
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok((files, bytes))
    }

    /// Runs `f` on the current contents (no lock: files are replaced atomically).
    async fn read<T, F>(&self, f: F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(&KeyringFile) -> Result<T, KeyError> + Send + 'static,
    {
        let path = self.path.clone();
        blocking(move || {
            let file = load(&path)?.unwrap_or_default();
            f(&file)
        })
        .await
    }

    /// Read-modify-write under both locks. `f` returns its result and whether it changed the file.
    async fn update<T, F>(&self, f: F) -> Result<T, KeyError>
    where
        T: Send + 'static,
        F: FnOnce(&mut KeyringFile) -> Result<(T, bool), KeyError> + Send + 'static,
    {
        let _guard = self.write_lock.lock().await;
        let path = self.path.clone();
        let lock_path = self.lock_path.clone();
        blocking(move || {
            let lock = lock(&lock_path)?;
            let mut file = load(&path)?.unwrap_or_default();
            let (out, dirty) = f(&mut file)?;
            if dirty {
                store(&path, &file)?;
            }
            drop(lock); // closing the descriptor releases the flock
            Ok(out)
        })
        .await
    }
}

#[async_trait::async_trait]
impl KeyProvider for LocalKeyring {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn is_development(&self) -> bool {
        true
    }

    async fn wrap(&self, tenant: &str, key: &[u8; 32], aad: &[u8]) -> Result<WrappedKey, KeyError> {
        validate_tenant(tenant)?;
        check_aad(aad)?;
        let context = bound_context(tenant, aad);
        let key = Zeroizing::new(*key);
        let rng = self.rng.clone();

        // Fast path: the tenant already has a KEK.
        let (t, k, c, r) = (
            tenant.to_string(),
            key.clone(),
            context.clone(),
            rng.clone(),
        );
        let existing = self
            .read(move |file| match file.tenants.get(&t) {
                Some(rec) if rec.destroyed => Err(KeyError::destroyed(&t)),
                Some(rec) if !rec.versions.is_empty() => seal_latest(rec, &k, &c, &r).map(Some),
                _ => Ok(None),
            })
            .await?;
        if let Some(wrapped) = existing {
            return Ok(wrapped);
        }

        // First use: create version 1 under the locks (unless another writer just did).
        let t = tenant.to_string();
        self.update(move |file| {
            let rec = file.tenants.entry(t.clone()).or_default();
            if rec.destroyed {
                return Err(KeyError::destroyed(&t));
            }
            let mut dirty = false;
            if rec.versions.is_empty() {
                rec.versions.push(new_kek(&rng)?);
                dirty = true;
            }
            let wrapped = seal_latest(rec, &key, &context, &rng)?;
            Ok((wrapped, dirty))
        })
        .await
    }

    async fn unwrap(
        &self,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        validate_tenant(tenant)?;
        check_aad(aad)?;
        check_provider(wrapped, KIND)?;
        let (t, w, c) = (
            tenant.to_string(),
            wrapped.clone(),
            bound_context(tenant, aad),
        );
        self.read(move |file| open_wrapped(file, &t, &w, &c)).await
    }

    async fn rewrap(
        &self,
        tenant: &str,
        wrapped: &WrappedKey,
        aad: &[u8],
    ) -> Result<WrappedKey, KeyError> {
        validate_tenant(tenant)?;
        check_aad(aad)?;
        check_provider(wrapped, KIND)?;
        let (t, w, c) = (
            tenant.to_string(),
            wrapped.clone(),
            bound_context(tenant, aad),
        );
        let rng = self.rng.clone();
        self.read(move |file| {
            let key = open_wrapped(file, &t, &w, &c)?;
            let rec = file
                .tenants
                .get(&t)
                .ok_or_else(|| KeyError::not_found(&t))?;
            seal_latest(rec, &key, &c, &rng)
        })
        .await
    }

    async fn rotate(&self, tenant: &str) -> Result<u32, KeyError> {
        validate_tenant(tenant)?;
        let t = tenant.to_string();
        let rng = self.rng.clone();
        self.update(move |file| {
            let rec = match file.tenants.get_mut(&t) {
                Some(rec) if rec.destroyed => return Err(KeyError::destroyed(&t)),
                Some(rec) if !rec.versions.is_empty() => rec,
                _ => return Err(KeyError::not_found(&t)),
            };
            rec.versions.push(new_kek(&rng)?);
            Ok((version_of(rec.versions.len())?, true))
        })
        .await
    }

    async fn destroy(&self, tenant: &str) -> Result<(), KeyError> {
        validate_tenant(tenant)?;
        let t = tenant.to_string();
        self.update(move |file| {
            let rec = file.tenants.entry(t).or_default();
            if rec.destroyed && rec.versions.is_empty() {
                return Ok(((), false));
            }
            rec.versions.zeroize(); // wipes every KEK string and empties the list
            rec.destroyed = true;
            Ok(((), true))
        })
        .await
    }

    async fn health_check(&self) -> Result<(), KeyError> {
        self.read(|_| Ok(())).await
    }

    /// The keyring file keeps counters: it is outside the data root, so a storage backend that
    /// rolls its key records back cannot roll these back with them.
    fn keeps_counters(&self) -> bool {
        true
    }

    async fn counter(&self, tenant: &str, name: &str) -> Result<u64, KeyError> {
        validate_tenant(tenant)?;
        crate::validate_counter_name(name)?;
        let (t, n) = (tenant.to_string(), name.to_string());
        self.read(move |file| {
            Ok(file
                .counters
                .get(&t)
                .and_then(|c| c.get(&n))
                .copied()
                .unwrap_or(0))
        })
        .await
    }

    async fn raise_counter(&self, tenant: &str, name: &str, value: u64) -> Result<u64, KeyError> {
        validate_tenant(tenant)?;
        crate::validate_counter_name(name)?;
        let (t, n) = (tenant.to_string(), name.to_string());
        self.update(move |file| {
            let stored = file.counters.entry(t).or_default().entry(n).or_insert(0);
            if *stored >= value {
                return Ok((*stored, false));
            }
            *stored = value;
            Ok((value, true))
        })
        .await
    }
}

async fn blocking<T, F>(f: F) -> Result<T, KeyError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, KeyError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KeyError::with_source(KeyErrorKind::Permanent, "keyring task failed", e))?
}

fn version_of(len: usize) -> Result<u32, KeyError> {
    u32::try_from(len).map_err(|_| KeyError::new(KeyErrorKind::Permanent, "too many KEK versions"))
}

fn new_kek(rng: &SystemRandom) -> Result<String, KeyError> {
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    rng.fill(&mut kek[..])
        .map_err(|_| KeyError::new(KeyErrorKind::Permanent, "the system RNG failed"))?;
    Ok(B64.encode(&kek[..]))
}

fn decode_kek(encoded: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let bytes = Zeroizing::new(B64.decode(encoded).map_err(|_| corrupt_kek())?);
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return Err(corrupt_kek());
    }
    kek.copy_from_slice(&bytes);
    Ok(kek)
}

fn corrupt_kek() -> KeyError {
    KeyError::new(
        KeyErrorKind::Permanent,
        "the keyring file holds a KEK that is not 32 bytes of base64",
    )
}

fn aead_key(kek: &[u8; KEY_LEN]) -> Result<LessSafeKey, KeyError> {
    let unbound = UnboundKey::new(&AES_256_GCM, kek)
        .map_err(|_| KeyError::new(KeyErrorKind::Permanent, "cannot load a KEK"))?;
    Ok(LessSafeKey::new(unbound))
}

fn seal_latest(
    rec: &TenantRecord,
    key: &[u8; KEY_LEN],
    context: &[u8],
    rng: &SystemRandom,
) -> Result<WrappedKey, KeyError> {
    let version = version_of(rec.versions.len())?;
    let encoded = rec
        .versions
        .last()
        .ok_or_else(|| KeyError::new(KeyErrorKind::Permanent, "tenant has no KEK version"))?;
    let kek = decode_kek(encoded)?;
    let aead = aead_key(&kek)?;
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)
        .map_err(|_| KeyError::new(KeyErrorKind::Permanent, "the system RNG failed"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(WRAPPED_LEN));
    out.extend_from_slice(&nonce);
    let mut sealed = Zeroizing::new(Vec::with_capacity(KEY_LEN + TAG_LEN));
    sealed.extend_from_slice(key);
    aead.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(context),
        &mut *sealed,
    )
    .map_err(|_| KeyError::new(KeyErrorKind::Permanent, "AES-GCM seal failed"))?;
    out.extend_from_slice(&sealed);
    Ok(WrappedKey {
        provider: KIND.to_string(),
        kek_version: version,
        ciphertext: B64.encode(&out[..]),
    })
}

fn open_wrapped(
    file: &KeyringFile,
    tenant: &str,
    wrapped: &WrappedKey,
    context: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyError> {
    let rec = file
        .tenants
        .get(tenant)
        .ok_or_else(|| KeyError::not_found(tenant))?;
    if rec.destroyed {
        return Err(KeyError::destroyed(tenant));
    }
    if rec.versions.is_empty() {
        return Err(KeyError::not_found(tenant));
    }
    let index = usize::try_from(wrapped.kek_version)
        .ok()
        .and_then(|v| v.checked_sub(1))
        .filter(|&i| i < rec.versions.len())
        .ok_or_else(|| {
            KeyError::invalid(format!(
                "tenant {tenant:?} has no KEK version {} (it has {})",
                wrapped.kek_version,
                rec.versions.len()
            ))
        })?;
    let raw = Zeroizing::new(
        B64.decode(&wrapped.ciphertext)
            .map_err(|_| KeyError::invalid("wrapped key ciphertext is not base64"))?,
    );
    if raw.len() != WRAPPED_LEN {
        return Err(KeyError::invalid(format!(
            "wrapped key ciphertext is {} bytes, expected {WRAPPED_LEN}",
            raw.len()
        )));
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&raw[..NONCE_LEN]);
    let mut sealed = Zeroizing::new(raw[NONCE_LEN..].to_vec());
    let kek = decode_kek(&rec.versions[index])?;
    let aead = aead_key(&kek)?;
    let plain = aead
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context),
            &mut sealed[..],
        )
        .map_err(|_| {
            KeyError::invalid(format!(
                "cannot unwrap for tenant {tenant:?}: wrong aad, another tenant's wrap, or tampered \
                 ciphertext"
            ))
        })?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if plain.len() != KEY_LEN {
        return Err(KeyError::invalid("unwrapped key is not 32 bytes"));
    }
    key.copy_from_slice(plain);
    Ok(key)
}

fn io_error(what: &str, path: &Path, e: io::Error) -> KeyError {
    let kind = if e.kind() == io::ErrorKind::PermissionDenied {
        KeyErrorKind::Denied
    } else {
        KeyErrorKind::Permanent
    };
    KeyError::with_source(
        kind,
        format!("keyring: {what} {} failed: {e}", path.display()),
        e,
    )
}

/// The effective uid of this process: the owner a keyring file and its lock must have.
fn current_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The folder that holds `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Opens `path` with `options`, never following a symlink in its last component (`O_NOFOLLOW`:
/// the open itself fails on one, so a link swapped in after any check is refused too), then
/// checks the open descriptor (`fstat`, not the path): a regular file, owned by this user, no
/// group/other mode bits. `None` if it does not exist. `what` names it in errors ("keyring",
/// "keyring lock file").
fn open_checked(
    what: &str,
    path: &Path,
    options: &mut OpenOptions,
) -> Result<Option<File>, KeyError> {
    // O_NONBLOCK: a FIFO planted at the path opens at once (and is then refused as not a regular
    // file) instead of blocking; it does not change reads and writes of a regular file.
    let file = match options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(KeyError::new(
                KeyErrorKind::Permanent,
                format!(
                    "{what} {} is a symbolic link, not a regular file; symlinks are refused: put \
                     the file itself at this path",
                    path.display()
                ),
            ));
        }
        Err(e) => return Err(io_error("opening", path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error("reading", path, e))?;
    check_file(what, path, &meta)?;
    Ok(Some(file))
}

/// Refuses what is not a regular file, is not owned by this user, or has group/other mode bits.
fn check_file(what: &str, path: &Path, meta: &fs::Metadata) -> Result<(), KeyError> {
    if meta.file_type().is_symlink() || !meta.file_type().is_file() {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!("{what} {} is not a regular file", path.display()),
        ));
    }
    let me = current_uid();
    if meta.uid() != me {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!(
                "{what} {} is owned by uid {}, not by this user (uid {me}): another user may have \
                 planted or replaced it; check it, then run `chown {me}` on it",
                path.display(),
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!(
                "{what} {} has mode {mode:04o}: group/others may access it; run `chmod 600` on it",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Refuses a folder that is not a directory, is owned by neither this user nor root, or that group
/// or others can write to (whoever can write to it can swap the keyring). A missing folder passes
/// (it is created with mode 0700 on the first write). Only the folder that holds the file is
/// checked, not its ancestors.
fn check_dir(dir: &Path) -> Result<(), KeyError> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("reading folder", dir, e)),
    };
    if !meta.is_dir() {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!("keyring folder {} is not a directory", dir.display()),
        ));
    }
    let me = current_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!(
                "keyring folder {} is owned by uid {}, not by this user (uid {me}) or root: its \
                 owner can swap the keyring; run `chown {me} {}` or keep the keyring in a folder \
                 of your own",
                dir.display(),
                meta.uid(),
                dir.display()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!(
                "keyring folder {} has mode {mode:04o}: group/others can write to it and swap the \
                 keyring; run `chmod 700 {}`",
                dir.display(),
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Reads the file's bytes, or `None` if it does not exist yet. Checks its folder, then opens it
/// with [`open_checked`].
fn read_bytes(path: &Path) -> Result<Option<Zeroizing<Vec<u8>>>, KeyError> {
    check_dir(&parent_dir(path))?;
    let Some(mut f) = open_checked("keyring", path, OpenOptions::new().read(true))? else {
        return Ok(None);
    };
    let meta = f.metadata().map_err(|e| io_error("reading", path, e))?;
    if meta.len() > MAX_FILE_LEN {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!(
                "keyring {} is larger than {MAX_FILE_LEN} bytes",
                path.display()
            ),
        ));
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(meta.len() as usize));
    (&mut f)
        .take(MAX_FILE_LEN)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error("reading", path, e))?;
    Ok(Some(bytes))
}

/// Loads the file, or `None` if it does not exist yet.
fn load(path: &Path) -> Result<Option<KeyringFile>, KeyError> {
    match read_bytes(path)? {
        Some(bytes) => parse(path, &bytes).map(Some),
        None => Ok(None),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<KeyringFile, KeyError> {
    let file: KeyringFile = serde_json::from_slice(bytes).map_err(|e| {
        KeyError::with_source(
            KeyErrorKind::Permanent,
            format!("keyring {} is not valid keyring JSON", path.display()),
            e,
        )
    })?;
    if file.format != FORMAT {
        return Err(KeyError::new(
            KeyErrorKind::Permanent,
            format!(
                "keyring {} has format {:?}, expected {FORMAT:?}",
                path.display(),
                file.format
            ),
        ));
    }
    for (tenant, rec) in &file.tenants {
        validate_tenant(tenant).map_err(|_| {
            KeyError::new(
                KeyErrorKind::Permanent,
                format!("keyring {} holds an invalid tenant id", path.display()),
            )
        })?;
        if rec.destroyed && !rec.versions.is_empty() {
            return Err(KeyError::new(
                KeyErrorKind::Permanent,
                format!(
                    "keyring {} holds KEKs for destroyed tenant {tenant:?}",
                    path.display()
                ),
            ));
        }
    }
    Ok(file)
}

/// The keyring's folder, created (mode 0700) if missing and checked with [`check_dir`].
fn ensure_parent(path: &Path) -> Result<PathBuf, KeyError> {
    let dir = parent_dir(path);
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error("creating directory", &dir, e))?;
    }
    check_dir(&dir)?;
    Ok(dir)
}

fn lock_path_of(path: &Path) -> PathBuf {
    let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
    lock_name.push(".lock");
    path.with_file_name(lock_name)
}

/// Opens (creating, mode 0600) and checks the lock file, like the keyring itself.
fn open_lock(lock_path: &Path) -> Result<File, KeyError> {
    ensure_parent(lock_path)?;
    open_checked(
        "keyring lock file",
        lock_path,
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600),
    )?
    .ok_or_else(|| {
        KeyError::new(
            KeyErrorKind::Permanent,
            format!(
                "keyring lock file {} vanished while being opened",
                lock_path.display()
            ),
        )
    })
}

/// Opens and locks (`flock`, exclusive) the lock file; closing the file unlocks it.
fn lock(lock_path: &Path) -> Result<File, KeyError> {
    let lock = open_lock(lock_path)?;
    lock.lock().map_err(|e| io_error("locking", lock_path, e))?;
    Ok(lock)
}

/// Encodes `file` and writes it with [`write_atomic`].
fn store(path: &Path, file: &KeyringFile) -> Result<(), KeyError> {
    let bytes = Zeroizing::new(serde_json::to_vec_pretty(file).map_err(|e| {
        KeyError::with_source(KeyErrorKind::Permanent, "cannot encode the keyring", e)
    })?);
    write_atomic(path, &bytes)
}

/// Writes atomically: a new 0600 temporary file in the same (checked) directory, fsync, rename,
/// fsync the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let dir = ensure_parent(path)?;
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| KeyError::new(KeyErrorKind::Permanent, "the system RNG failed"))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let result = (|| {
        // `create_new` (O_EXCL) never follows or reuses anything already at the name.
        let mut f = open_checked(
            "keyring temporary file",
            &tmp,
            OpenOptions::new().write(true).create_new(true).mode(0o600),
        )?
        .ok_or_else(|| io_error("creating", &tmp, io::ErrorKind::NotFound.into()))?;
        f.write_all(bytes)
            .map_err(|e| io_error("writing", &tmp, e))?;
        f.sync_all().map_err(|e| io_error("syncing", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, path).map_err(|e| io_error("replacing", path, e))?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Makes renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), KeyError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The open itself refuses a symlink (`O_NOFOLLOW`), with no check before it that a swap
    /// could race: a link to a valid, private keyring file is refused all the same.
    #[test]
    fn the_open_itself_refuses_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.json");
        store(&real, &KeyringFile::default()).unwrap();
        assert!(read_bytes(&real).unwrap().is_some());
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = open_checked("keyring", &link, OpenOptions::new().read(true)).unwrap_err();
        assert_eq!(err.kind, KeyErrorKind::Permanent);
        assert!(err.message.contains("symbolic link"), "{err}");
        // A write through a link is refused too, and its target stays as it was.
        let before = fs::read(&real).unwrap();
        let err = open_checked(
            "keyring lock file",
            &link,
            OpenOptions::new().write(true).create(true).truncate(true),
        )
        .unwrap_err();
        assert!(err.message.contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&real).unwrap(), before);
    }

    /// A FIFO planted at the path is refused at once instead of blocking the open.
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("keyring.json");
        match std::process::Command::new("mkfifo").arg(&fifo).status() {
            Ok(s) if s.success() => {}
            other => {
                eprintln!("skipped: mkfifo failed: {other:?}");
                return;
            }
        }
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o600)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || tx.send(read_bytes(&path).map(|_| ())));
        let result = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("opening a FIFO blocked");
        let err = result.unwrap_err();
        assert!(err.message.contains("not a regular file"), "{err}");
    }
}
