//! [`KeyAdmin`]: key operations on the facade: rotate a tenant's KEK, rotate a namespace's data
//! key, re-encrypt a namespace to its newest key, retire old epochs, authenticate key records
//! written before authentication existed, and crypto-shred a tenant.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::blob::{BlobStore, Head, KeyPaths};
use super::layout::Layout;
use super::manifest::{self, HeadManifest, StoredVersion};
use super::sealing::{self, Place};
use crate::adapters::{BlobPath, PutMode, collect_bytes, once_stream};
use crate::crypto::streams::{DecryptSpec, decrypt_stream, encrypt_stream};
use crate::crypto::{
    EpochInfo, EpochState, KekRotation, KeyUpgradeReport, NamespaceKeys, TenantKeyRotation,
};
use crate::error::{Error, ErrorCode, Result};
use crate::observability::clock::new_id;
use crate::observability::observe;
use crate::policy::{Action, TENANT_WIDE};
use crate::types::{Namespace, StorageContext};

use super::options::{MAX_LIST_LIMIT, decode_cursor, encode_cursor};

/// How many times re-encrypting one key retries a lost compare-and-swap.
const MAX_KEY_ATTEMPTS: usize = 10;

/// Options of [`KeyAdmin::reencrypt_namespace`].
#[derive(Debug, Clone)]
pub struct ReencryptOptions {
    /// Continue after the key this cursor names (from a previous report).
    pub cursor: Option<String>,
    /// Process at most this many keys in this call.
    pub limit: usize,
}

impl Default for ReencryptOptions {
    fn default() -> Self {
        Self {
            cursor: None,
            limit: MAX_LIST_LIMIT,
        }
    }
}

/// What a re-encryption pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReencryptReport {
    /// The data-key epoch everything now uses.
    pub epoch: u32,
    /// Keys looked at.
    pub keys_scanned: u64,
    /// Bodies decrypted and written anew under the newest key.
    pub bodies_rewritten: u64,
    /// Versions whose sealed metadata was sealed anew.
    pub versions_resealed: u64,
    /// Pass this to continue; `None` when the namespace is done.
    pub next_cursor: Option<String>,
}

/// What [`KeyAdmin::retire_epochs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetireReport {
    /// Epochs retired by this call.
    pub retired: Vec<u32>,
    /// Epochs that were retired already.
    pub already_retired: Vec<u32>,
}

/// Key operations (admin). Get it from [`Storage::keys`](super::Storage::keys).
#[derive(Debug, Clone)]
pub struct KeyAdmin {
    pub(super) blobs: BlobStore,
    pub(super) records: super::record::RecordStore,
}

fn epoch_of(hex: Option<&str>) -> Result<Option<u32>> {
    let Some(hex) = hex else { return Ok(None) };
    let bytes =
        crate::hex::decode(hex).ok_or_else(|| Error::consistency("stored header is corrupt"))?;
    let (header, _) = sanctum_crypto::Header::parse(&bytes).map_err(crate::crypto::crypto_err)?;
    Ok(Some(header.key_ref.epoch))
}

impl KeyAdmin {
    /// Runs a tenant-wide key operation `op`: observed, authorized (`ManageKeys` on the whole
    /// tenant), then audited when it succeeds.
    async fn tenant_op<T>(
        &self,
        ctx: &StorageContext,
        op: &'static str,
        run: impl AsyncFnOnce(&str) -> Result<T>,
    ) -> Result<T> {
        let b = &self.blobs;
        observe(op, b.adapter.as_ref(), ctx, async {
            b.access
                .check(ctx, op, Action::ManageKeys, TENANT_WIDE, None)
                .await?;
            let out = run(ctx.tenant().as_str()).await?;
            b.audit_event(ctx, op, None, None, None);
            Ok(out)
        })
        .await
    }

    /// Authenticates the namespace key records of the caller's tenant that were written before
    /// key records were authenticated. Until then such a namespace fails with `Encryption` and
    /// a message naming this operation. Run it once, on a store you trust as it is: it
    /// authenticates what it finds. Version records stay readable untagged until
    /// [`reencrypt_namespace`](Self::reencrypt_namespace) completes a pass.
    pub async fn upgrade(&self, ctx: &StorageContext) -> Result<KeyUpgradeReport> {
        self.tenant_op(ctx, "keys.upgrade", async |tenant| {
            self.blobs.keys.upgrade(tenant).await
        })
        .await
    }

    /// Rotates the caller's tenant's tenant key: new data-key epochs (one per namespace, made
    /// now) are wrapped by a new tenant key, so a leaked old one exposes no future data key. The
    /// old one stays decrypt- and verify-only until [`retire_tenant_keys`](Self::retire_tenant_keys).
    pub async fn rotate_tenant_key(&self, ctx: &StorageContext) -> Result<TenantKeyRotation> {
        self.tenant_op(ctx, "keys.rotate_tenant_key", async |tenant| {
            self.blobs.keys.rotate_tenant_key(tenant).await
        })
        .await
    }

    /// Drops the caller's tenant's older tenant keys for good, once every namespace was
    /// re-encrypted since the rotation and its old epochs retired (else `Conflict`, naming
    /// what to run). Returns the generations dropped.
    pub async fn retire_tenant_keys(&self, ctx: &StorageContext) -> Result<Vec<u32>> {
        self.tenant_op(ctx, "keys.retire_tenant_keys", async |tenant| {
            self.blobs.keys.retire_tenant_keys(tenant).await
        })
        .await
    }

    /// The data-key epochs of `ns` and their states, oldest first.
    pub async fn epochs(&self, ctx: &StorageContext, ns: &str) -> Result<Vec<EpochInfo>> {
        let b = &self.blobs;
        observe("keys.epochs", b.adapter.as_ref(), ctx, async {
            let ns = Namespace::new(ctx.tenant(), ns)?;
            b.access
                .check(ctx, "keys.epochs", Action::ManageKeys, ns.name(), None)
                .await?;
            b.keys.epochs(ctx.tenant().as_str(), ns.name()).await
        })
        .await
    }

    /// Retires data-key epochs of `ns`: `epochs`, or every one but the active one when `None`.
    /// Afterwards data under them, or claiming them, fails with `Encryption`, so a leaked old
    /// data key can no longer forge data readers accept. Refused (`Conflict`, naming the epochs
    /// and how many versions use them) while any version's body or metadata is still under
    /// one of them: run [`reencrypt_namespace`](Self::reencrypt_namespace) first.
    pub async fn retire_epochs(
        &self,
        ctx: &StorageContext,
        ns: &str,
        epochs: Option<Vec<u32>>,
    ) -> Result<RetireReport> {
        let b = &self.blobs;
        observe("keys.retire", b.adapter.as_ref(), ctx, async {
            let namespace = Namespace::new(ctx.tenant(), ns)?;
            b.access
                .check(
                    ctx,
                    "keys.retire",
                    Action::ManageKeys,
                    namespace.name(),
                    None,
                )
                .await?;
            let tenant = ctx.tenant().as_str();
            let known = b.keys.epochs(tenant, namespace.name()).await?;
            let wanted: Vec<u32> = match epochs {
                Some(list) => list,
                None => known
                    .iter()
                    .filter(|e| e.state == EpochState::DecryptOnly)
                    .map(|e| e.epoch)
                    .collect(),
            };
            let already: Vec<u32> = known
                .iter()
                .filter(|e| e.state == EpochState::Retired && wanted.contains(&e.epoch))
                .map(|e| e.epoch)
                .collect();
            let in_use = self.epochs_in_use(&namespace).await?;
            let records = match self.records.configured() {
                true => self.records.epochs_in_use(ctx, namespace.name()).await?,
                false => BTreeMap::new(),
            };
            let blocking: Vec<String> = wanted
                .iter()
                .filter_map(|e| {
                    let what = [(in_use.get(e), "versions"), (records.get(e), "records")]
                        .into_iter()
                        .filter_map(|(n, what)| n.map(|n| format!("{n} {what}")))
                        .collect::<Vec<_>>();
                    (!what.is_empty()).then(|| format!("epoch {e} ({})", what.join(", ")))
                })
                .collect();
            if !blocking.is_empty() {
                return Err(Error::conflict(format!(
                    "cannot retire: data in namespace '{}' is still under {}; run `sanctum keys \
                     reencrypt {}` first",
                    namespace.name(),
                    blocking.join(", "),
                    namespace.name()
                )));
            }
            let retired = b
                .keys
                .retire_epochs(tenant, namespace.name(), &wanted)
                .await?;
            b.audit_event(ctx, "keys.retire", Some(&namespace), None, None);
            Ok(RetireReport {
                retired,
                already_retired: already,
            })
        })
        .await
    }

    /// How many versions of `ns` have their body or metadata under each epoch.
    async fn epochs_in_use(&self, ns: &Namespace) -> Result<BTreeMap<u32, u64>> {
        let mut in_use = BTreeMap::new();
        let mut damaged = None;
        self.blobs
            .scan_histories(ns, |_, versions| {
                for v in versions {
                    let mut epochs = Vec::with_capacity(2);
                    for hex in [v.body_header.as_deref(), v.sealed.as_deref()] {
                        match epoch_of(hex) {
                            Ok(Some(epoch)) if !epochs.contains(&epoch) => epochs.push(epoch),
                            Ok(_) => {}
                            Err(e) => damaged = Some(e),
                        }
                    }
                    for epoch in epochs {
                        *in_use.entry(epoch).or_insert(0u64) += 1;
                    }
                }
            })
            .await?;
        // A header that cannot be read might be under any epoch: refuse rather than guess.
        match damaged {
            Some(e) => Err(e),
            None => Ok(in_use),
        }
    }

    /// Rotates the caller's tenant's KEK: the tenant key is re-wrapped under the new KEK
    /// version. No data and no data key is rewritten.
    pub async fn rotate_kek(&self, ctx: &StorageContext) -> Result<KekRotation> {
        self.tenant_op(ctx, "keys.rotate_kek", async |tenant| {
            self.blobs.keys.rotate_kek(tenant).await
        })
        .await
    }

    /// Starts a new data-key epoch for `ns`: new writes use it; older data stays readable.
    pub async fn rotate_namespace(&self, ctx: &StorageContext, ns: &str) -> Result<u32> {
        let b = &self.blobs;
        observe("keys.rotate_namespace", b.adapter.as_ref(), ctx, async {
            let ns = Namespace::new(ctx.tenant(), ns)?;
            b.access
                .check(
                    ctx,
                    "keys.rotate_namespace",
                    Action::ManageKeys,
                    ns.name(),
                    None,
                )
                .await?;
            let epoch = b
                .keys
                .rotate_namespace(ctx.tenant().as_str(), ns.name())
                .await?;
            b.audit_event(ctx, "keys.rotate_namespace", Some(&ns), None, None);
            Ok(epoch)
        })
        .await
    }

    /// Crypto-shreds the caller's tenant: destroys its KEK and key records and drops cached
    /// keys. Every later read of its data fails with `Encryption`, and it can write no more.
    pub async fn shred_tenant(&self, ctx: &StorageContext) -> Result<()> {
        self.tenant_op(ctx, "keys.shred_tenant", async |tenant| {
            self.blobs.keys.shred(tenant).await
        })
        .await
    }

    /// Re-encrypts every body and sealed metadata of `ns` that an older data-key epoch
    /// protects, key by key. Resumable: pass the report's `next_cursor` to continue; re-running
    /// a finished pass does nothing. The replaced bodies and pages are left for
    /// [`BlobStore::sweep`](super::BlobStore::sweep), since readers may still hold the old head:
    /// sweep after the grace period to remove the old ciphertext.
    pub async fn reencrypt_namespace(
        &self,
        ctx: &StorageContext,
        ns: &str,
        opts: ReencryptOptions,
    ) -> Result<ReencryptReport> {
        let b = &self.blobs;
        observe("keys.reencrypt_namespace", b.adapter.as_ref(), ctx, async {
            let namespace = self
                .start_batch(ctx, "keys.reencrypt_namespace", ns, &opts)
                .await?;
            let layout = Layout::new(&namespace);
            let prefix = layout.head_prefix("");
            let after = match &opts.cursor {
                Some(c) => Some(
                    layout
                        .head(&decode_cursor(ctx.tenant().as_str(), namespace.name(), c)?)?
                        .as_str()
                        .to_string(),
                ),
                None => None,
            };
            let page = b
                .adapter
                .list(&prefix, after.as_deref(), opts.limit)
                .await?;
            let mut report = ReencryptReport::default();
            let mut last_key = None;
            for entry in &page.entries {
                let key = layout.key_of_head(entry.path.as_str())?;
                let (bodies, resealed, epoch) = self.reencrypt_key(ctx, ns, &key).await?;
                report.keys_scanned += 1;
                report.bodies_rewritten += bodies;
                report.versions_resealed += resealed;
                report.epoch = epoch;
                last_key = Some(key);
            }
            if report.epoch == 0 {
                report.epoch = b
                    .keys
                    .namespace(ctx.tenant().as_str(), ns, false)
                    .await
                    .map(|k| k.current_epoch())
                    .unwrap_or(0);
            }
            report.next_cursor = if page.more {
                last_key
                    .as_deref()
                    .map(|k| encode_cursor(ctx.tenant().as_str(), namespace.name(), k))
            } else {
                None
            };
            if report.next_cursor.is_none() && report.epoch > 0 {
                // The pass is complete: every version record is tagged now with the current
                // tenant key's derived key, so untagged ones (from before authentication) are
                // refused from here on, and older tenant keys are no longer needed for them.
                b.keys
                    .mark_retagged(ctx.tenant().as_str(), namespace.name())
                    .await?;
            }
            b.audit_event(
                ctx,
                "keys.reencrypt_namespace",
                Some(&namespace),
                None,
                None,
            );
            Ok(report)
        })
        .await
    }

    /// The checks before a batch of a re-encryption pass: the namespace's name, `ManageKeys` on
    /// it, and the batch size.
    async fn start_batch(
        &self,
        ctx: &StorageContext,
        operation: &'static str,
        ns: &str,
        opts: &ReencryptOptions,
    ) -> Result<Namespace> {
        let namespace = Namespace::new(ctx.tenant(), ns)?;
        self.blobs
            .access
            .check(ctx, operation, Action::ManageKeys, namespace.name(), None)
            .await?;
        if opts.limit == 0 || opts.limit > MAX_LIST_LIMIT {
            return Err(Error::invalid(format!("limit must be 1-{MAX_LIST_LIMIT}")));
        }
        Ok(namespace)
    }

    /// Re-seals every record of `ns` that an older data-key epoch protects, up to `limit` per
    /// call, at the record's own version (its document, version and timestamps stay).
    /// Resumable: pass the report's `next_cursor` to continue. Needs `ManageKeys` on `ns`.
    /// Without a configured record database there is nothing to do.
    pub async fn reencrypt_records(
        &self,
        ctx: &StorageContext,
        ns: &str,
        opts: ReencryptOptions,
    ) -> Result<super::record::RecordReencryptReport> {
        let b = &self.blobs;
        observe("keys.reencrypt_records", b.adapter.as_ref(), ctx, async {
            let namespace = self
                .start_batch(ctx, "keys.reencrypt_records", ns, &opts)
                .await?;
            if !self.records.configured() {
                return Ok(super::record::RecordReencryptReport::default());
            }
            let report = self
                .records
                .reencrypt(ctx, namespace.name(), opts.cursor.as_deref(), opts.limit)
                .await?;
            b.audit_event(ctx, "keys.reencrypt_records", Some(&namespace), None, None);
            Ok(report)
        })
        .await
    }

    /// Brings one key to the newest epoch. Returns (bodies rewritten, versions resealed, epoch).
    async fn reencrypt_key(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
    ) -> Result<(u64, u64, u32)> {
        let b = &self.blobs;
        let (_, paths) = KeyPaths::new(ctx, ns, key)?;
        let place = Place {
            clear: false,
            tenant: ctx.tenant().as_str(),
            namespace: ns,
            key,
        };
        for _ in 0..MAX_KEY_ATTEMPTS {
            let Some(head) = b.read_head(&paths.head).await? else {
                return Ok((0, 0, 0));
            };
            if head.manifest.purged || head.manifest.is_empty() {
                return Ok((0, 0, 0));
            }
            let keys = b.read_keys(ctx, ns).await?;
            let mut pages = Vec::new();
            for page_id in &head.manifest.history_pages {
                pages.push((page_id.clone(), b.read_page(&paths, page_id).await?));
            }
            let mut pass = Pass {
                place,
                keys: &keys,
                rewritten: HashMap::new(),
                written: Vec::new(),
                resealed: 0,
                current_inline: head
                    .manifest
                    .current()
                    .zip(head.inline.clone())
                    .map(|(c, inline)| (c.version_id.clone(), inline)),
            };
            match self.reencrypt_head(&paths, &head, &pages, &mut pass).await {
                Ok(()) => {
                    // The old bodies and pages are referenced no more, but a reader or a
                    // restore may still hold the old head: `sweep` removes them after its
                    // grace period.
                    return Ok((
                        pass.rewritten.len() as u64,
                        pass.resealed,
                        keys.current_epoch(),
                    ));
                }
                Err(e) => {
                    for path in &pass.written {
                        let _ = b.adapter.delete(path, None).await;
                    }
                    if e.code() != ErrorCode::Conflict {
                        return Err(e);
                    }
                }
            }
        }
        Err(Error::conflict(
            "gave up re-encrypting a key after repeated concurrent writes",
        ))
    }

    /// One attempt: writes new bodies and pages, then swaps the head (compare-and-swap).
    async fn reencrypt_head(
        &self,
        paths: &KeyPaths,
        head: &Head,
        pages: &[(String, Vec<StoredVersion>)],
        pass: &mut Pass<'_>,
    ) -> Result<()> {
        let b = &self.blobs;
        let in_head = head.manifest.versions()?;
        let mut old_all = in_head.clone();
        for (_, versions) in pages {
            old_all.extend(versions.iter().cloned());
        }
        // Authenticated first: re-encryption tags what it writes, so it must never launder a
        // record the backend forged.
        sealing::verify_chain(pass.keys, pass.place, &old_all)?;
        let mut all = Vec::with_capacity(old_all.len());
        for v in &old_all {
            all.push(self.renew(paths, v, pass).await?);
        }
        // Chain and tag every record anew, oldest first (records written before authentication
        // get their first tags here; for tagged, unchanged ones this reproduces the same tags).
        let mut prior: Option<StoredVersion> = None;
        for v in all.iter_mut().rev() {
            sealing::link(pass.keys, pass.place, v, prior.as_ref())?;
            prior = Some(v.clone());
        }
        let mut rest = all.split_off(in_head.len());
        let new_head = all;
        let mut page_ids = Vec::new();
        for (page_id, versions) in pages {
            let tail = rest.split_off(versions.len());
            let renewed = std::mem::replace(&mut rest, tail);
            if renewed == *versions {
                page_ids.push(page_id.clone());
                continue;
            }
            let new_page = new_id(b.clock.as_ref());
            let page_path = paths.page(&new_page)?;
            b.adapter
                .put(
                    &page_path,
                    once_stream(manifest::encode_page(&renewed)?),
                    PutMode::Create,
                )
                .await?;
            pass.written.push(page_path);
            page_ids.push(new_page);
        }
        if new_head == in_head && page_ids == head.manifest.history_pages {
            return Ok(()); // already at the newest epoch
        }
        let current = &new_head[0];
        // The inline copy of a small current body follows its body to the new key.
        let inline = match (&head.inline, current.body_id.as_deref()) {
            (Some(_), Some(body_id)) if Some(body_id) != in_head[0].body_id.as_deref() => {
                let got = b.adapter.get(&paths.body(body_id)?, None).await?;
                Some(collect_bytes(got.body).await?)
            }
            (inline, _) => inline.clone(),
        };
        let next = HeadManifest::from_versions(&new_head, page_ids)?;
        let bytes = manifest::encode(&next, inline.as_deref())?;
        b.adapter
            .put(
                &paths.head,
                once_stream(bytes),
                PutMode::Update(head.etag.clone()),
            )
            .await?;
        Ok(())
    }

    /// `v` under the newest epoch: its body rewritten (once per body) and its metadata resealed
    /// when an older epoch protects them.
    async fn renew(
        &self,
        paths: &KeyPaths,
        v: &StoredVersion,
        pass: &mut Pass<'_>,
    ) -> Result<StoredVersion> {
        let current = pass.keys.current_epoch();
        let mut v = v.clone();
        let old_epoch = epoch_of(v.body_header.as_deref())?.is_some_and(|e| e < current);
        // Small bodies in the old layout (a plain body message beside sealed metadata) move to
        // the combined one (one message, one key derivation per read).
        let old_layout = v.combined_len.is_none()
            && !v.tombstone
            && v.size <= sealing::SMALL_MAX
            && v.body_header.is_some();
        if let Some(old_id) = v.body_id.clone()
            && (old_epoch || old_layout)
        {
            if !pass.rewritten.contains_key(&old_id) {
                let inline = pass
                    .current_inline
                    .as_ref()
                    .filter(|(id, _)| *id == v.version_id)
                    .map(|(_, message)| message.clone());
                let rewritten = match v.size <= sealing::SMALL_MAX {
                    true => {
                        self.rewrite_small(paths, pass.place, pass.keys, &v, inline)
                            .await?
                    }
                    false => self.rewrite_body(paths, pass.place, pass.keys, &v).await?,
                };
                pass.written.push(paths.body(&rewritten.0)?);
                pass.rewritten.insert(old_id.clone(), rewritten);
            }
            let (new_body, header, combined_len) = &pass.rewritten[&old_id];
            v.body_id = Some(new_body.clone());
            v.body_header = Some(header.clone());
            v.combined_len = *combined_len;
            // The rewrite wrote the body object.
            v.body_deferred = false;
        }
        if epoch_of(v.sealed.as_deref())?.is_some_and(|e| e < current) {
            let sealed = sealing::unseal(pass.keys, pass.place, &v)?;
            v.sealed = Some(sealing::seal(
                pass.keys,
                pass.place,
                &v.version_id,
                &sealed,
            )?);
            pass.resealed += 1;
        }
        Ok(v)
    }

    /// Writes the small body of `v` anew, with its metadata, as one combined message under the
    /// namespace's current key and a fresh body id. Returns the new id, header (hex) and the
    /// message's plaintext length.
    async fn rewrite_small(
        &self,
        paths: &KeyPaths,
        place: Place<'_>,
        keys: &NamespaceKeys,
        v: &StoredVersion,
        inline: Option<bytes::Bytes>,
    ) -> Result<Rewritten> {
        let b = &self.blobs;
        let message = match inline {
            // The current version: the head's copy (its body object may not exist yet).
            Some(message) => message,
            None => collect_bytes(b.read_body(paths, v, None).await?).await?,
        };
        let (sealed, body) = match v.combined_len {
            Some(_) => sealing::open_small(keys, place, v, &message)?,
            None => (
                sealing::unseal(keys, place, v)?,
                sealing::open_plain_body(keys, place, v, &message)?,
            ),
        };
        let new_body = new_id(b.clock.as_ref());
        let small = sealing::seal_small(keys, place, &new_body, &sealed, &body)?;
        b.adapter
            .put(
                &paths.body(&new_body)?,
                once_stream(small.message),
                PutMode::Overwrite,
            )
            .await?;
        Ok((new_body, small.header, Some(small.plaintext_len)))
    }

    /// Decrypts the body of `v` and writes it anew under the namespace's current key and a
    /// fresh body id. Returns the new id and header (hex).
    async fn rewrite_body(
        &self,
        paths: &KeyPaths,
        place: Place<'_>,
        keys: &NamespaceKeys,
        v: &StoredVersion,
    ) -> Result<Rewritten> {
        let b = &self.blobs;
        let old_id = v
            .body_id
            .as_deref()
            .expect("only versions with bodies are rewritten");
        let (header, header_bytes) = sealing::body_header(v)?;
        let body = b.read_body(paths, v, None).await?;
        let spec = DecryptSpec {
            header,
            header_bytes,
            with_header: true,
            first_chunk: 0,
            skip: 0,
            take: v.size,
            to_end: true,
        };
        let plain = decrypt_stream(keys, &place.body(old_id), spec, body)?;
        let new_body = new_id(b.clock.as_ref());
        let (new_header, cipher) = encrypt_stream(keys, &place.body(&new_body), plain)?;
        b.adapter
            .put(&paths.body(&new_body)?, cipher, PutMode::Overwrite)
            .await?;
        Ok((new_body, sealing::hex(&new_header), None))
    }
}

/// A body written anew: its id, header (hex) and, for a combined message, plaintext length.
type Rewritten = (String, String, Option<u64>);

/// State of one re-encryption attempt of a key.
struct Pass<'a> {
    place: Place<'a>,
    keys: &'a NamespaceKeys,
    /// Old body id → its rewrite.
    rewritten: HashMap<String, Rewritten>,
    /// Objects written so far (deleted again if the attempt fails).
    written: Vec<BlobPath>,
    /// The current version's id and the body message the head inlines (its body object may
    /// not exist yet: `body_deferred`).
    current_inline: Option<(String, bytes::Bytes)>,
    resealed: u64,
}
