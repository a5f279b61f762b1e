//! The blob facade: versioned objects over any [`BlobAdapter`].
//!
//! Every write streams its body to a fresh immutable body object, then replaces the key's head
//! manifest with a compare-and-swap. Committed means "listed in a head that won its CAS": a
//! reader sees the old head or the new one, never a torn object, and concurrent `if_match`
//! writers cannot both win. A writer that loses deletes its body; bodies orphaned by a crash or
//! a dropped future are removed by [`BlobStore::sweep`] once older than a grace period.
//!
//! Cancel safety: dropping a `put` future before it returns either commits the version or leaves
//! the key as it was (never a partial version); a body written before the drop may be left for
//! the sweeper. Dropping a [`BlobRead`] body stream stops the read.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::AsyncRead;
use tokio::sync::oneshot;

use super::layout::Layout;
use super::manifest::{self, HeadManifest, MAX_HEAD_BYTES, StoredVersion};
use super::options::{
    BlobList, BlobRead, DamagedKey, GetOptions, ListOptions, MAX_LIST_LIMIT, PutOptions,
    SweepReport, decode_cursor, encode_cursor,
};
use super::parts;
use super::sealing::{self, Place, Sealed};
use super::stream::{Tap, Verify, checksum_string};
use crate::adapters::{BlobAdapter, BlobPath, ByteStream, PutMode, collect_bytes, once_stream};
use crate::crypto::integrity::Mark;
use crate::crypto::streams::{DecryptSpec, decrypt_stream, encrypt_stream};
use crate::crypto::{KeyManager, NamespaceKeys};
use crate::error::{Error, ErrorCode, Result};
use crate::observability::audit::{AuditEvent, AuditSink};
use crate::observability::clock::{Clock, id_time_ms, is_id, new_id};
use crate::observability::{observe, observe_stream};
use crate::policy::{AccessSettings, Action, Authorizer};
use crate::quota::{Charge, QuotaLedger, QuotaUsage};
use crate::types::limits::{
    validate_content_type, validate_key, validate_metadata, validate_prefix,
};
use crate::types::{Consistency, Namespace, ObjectVersion, StorageContext, StorageObject};

/// How many head manifests a listing reads at once.
const LIST_CONCURRENCY: usize = 16;
/// How many times an unconditional write retries a lost compare-and-swap.
const MAX_CAS_ATTEMPTS: usize = 100;
/// Chunk size when reading from an `AsyncRead`.
const READER_CHUNK: usize = 256 * 1024;

/// Tunables of the blob facade.
#[derive(Debug, Clone, Copy)]
pub struct BlobSettings {
    /// Bodies up to this many bytes are also inlined in the head manifest.
    pub inline_threshold: u64,
    /// **Benchmarks only** (feature `conformance`): keep bodies and metadata in the clear, so a
    /// benchmark can measure what encryption costs in the same run. Never use it for data.
    #[cfg(feature = "conformance")]
    #[doc(hidden)]
    pub plaintext_for_benchmarks: bool,
}

impl Default for BlobSettings {
    fn default() -> Self {
        Self {
            inline_threshold: 64 * 1024,
            #[cfg(feature = "conformance")]
            plaintext_for_benchmarks: false,
        }
    }
}

impl BlobSettings {
    /// Whether this facade stores data in the clear (only ever for benchmarks).
    pub(super) fn clear(&self) -> bool {
        #[cfg(feature = "conformance")]
        return self.plaintext_for_benchmarks;
        #[cfg(not(feature = "conformance"))]
        false
    }
}

/// The blob facade. Cheap to clone; every method takes the caller's [`StorageContext`].
#[derive(Debug, Clone)]
pub struct BlobStore {
    pub(super) adapter: Arc<dyn BlobAdapter>,
    pub(super) keys: Arc<KeyManager>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) audit: Arc<dyn AuditSink>,
    pub(super) settings: BlobSettings,
    pub(super) access: Arc<Authorizer>,
    pub(super) quotas: Arc<QuotaLedger>,
}

/// A head manifest as read, with the etag to compare-and-swap against.
#[derive(Debug)]
pub(super) struct Head {
    pub(super) manifest: HeadManifest,
    pub(super) inline: Option<Bytes>,
    pub(super) etag: String,
}

/// A version to append to a head, and how.
struct Append<'a> {
    /// The new version; `commit` chains it onto the head it commits on (`sealing::link`).
    version: &'a StoredVersion,
    /// The namespace's keys (the chain's authentication key) and the key's place.
    keys: &'a NamespaceKeys,
    place: Place<'a>,
    /// The body, when small enough to inline.
    inline: Option<&'a [u8]>,
    /// Whether a lost compare-and-swap re-reads the head and retries (else it is a `Conflict`).
    retry: bool,
    /// The head becomes visible only after this resolves (the body's durability).
    ready: Option<BoxFuture<'static, Result<()>>>,
}

/// One key's paths within its namespace.
pub(super) struct KeyPaths {
    /// The namespace's name and the key, for errors that name their subject.
    namespace: String,
    key: String,
    pub(super) layout: Layout,
    pub(super) enc: String,
    pub(super) head: BlobPath,
}

impl KeyPaths {
    pub(super) fn new(ctx: &StorageContext, ns: &str, key: &str) -> Result<(Namespace, Self)> {
        Self::new_in(&Namespace::new(ctx.tenant(), ns)?, key)
    }

    pub(super) fn new_in(ns: &Namespace, key: &str) -> Result<(Namespace, Self)> {
        let ns = ns.clone();
        validate_key(key)?;
        let layout = Layout::new(&ns);
        let head = layout.head(key)?;
        Ok((
            ns.clone(),
            Self {
                namespace: ns.name().to_string(),
                key: key.to_string(),
                enc: Layout::enc(key),
                layout,
                head,
            },
        ))
    }

    pub(super) fn body(&self, body_id: &str) -> Result<BlobPath> {
        self.layout.body(&self.enc, body_id)
    }

    /// `NotFound` for this key, naming it (within the caller's own tenant, so it leaks nothing).
    pub(super) fn missing(&self) -> Error {
        Error::not_found(format!(
            "no such object: key '{}' in namespace '{}'",
            self.key.escape_debug(),
            self.namespace
        ))
    }

    /// `NotFound` for a version of this key.
    pub(super) fn missing_version(&self, version_id: &str) -> Error {
        Error::not_found(format!(
            "no such version: {version_id} of key '{}' in namespace '{}'",
            self.key.escape_debug(),
            self.namespace
        ))
    }

    pub(super) fn page(&self, page_id: &str) -> Result<BlobPath> {
        self.layout.page(&self.enc, page_id)
    }
}

/// Whether a failure to read one key is damage to that key's stored data (which a listing may
/// skip) rather than a failure of the backend or the caller.
/// A read of a committed version's body object found none: the store is damaged.
pub(super) fn missing_body(e: Error) -> Error {
    e.missing_means(
        ErrorCode::Consistency,
        "the body of a committed version is missing",
    )
}

/// A body object whose size is not the one its version implies.
pub(super) fn wrong_body_size() -> Error {
    Error::consistency("body size differs from the version's size")
}

fn is_damage(e: &Error) -> bool {
    matches!(e.code(), ErrorCode::Consistency | ErrorCode::Encryption)
}

fn check_version_id(id: &str) -> Result<()> {
    if is_id(id) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "malformed version id {:?}: a version id is the 26-character id a put returned",
            id.chars().take(64).collect::<String>()
        )))
    }
}

/// Refuses `CacheOnly` reads: there is no cache yet, and such a read must never touch the adapter.
fn check_read_mode(ctx: &StorageContext) -> Result<()> {
    let policy = ctx.cache_policy;
    if policy.consistency == Consistency::CacheOnly && !policy.bypass_cache {
        return Err(Error::new(
            ErrorCode::NotSupported,
            "consistency cache_only needs the cache layer, which this build does not have",
        ));
    }
    Ok(())
}

/// Decodes a history page, refusing one larger than any valid page (it comes from storage).
async fn read_page_body(got: crate::adapters::BlobGet) -> Result<Vec<StoredVersion>> {
    if got.meta.size > MAX_HEAD_BYTES {
        return Err(Error::consistency(
            "history page is larger than any valid page",
        ));
    }
    manifest::decode_page(&collect_bytes(got.body).await?)
}

/// Plaintext bytes of the distinct bodies `versions` keep (restored versions share a body).
fn body_bytes(versions: &[StoredVersion]) -> u64 {
    let mut seen = HashSet::new();
    versions
        .iter()
        .filter(|v| v.body_id.as_ref().is_some_and(|id| seen.insert(id.clone())))
        .map(|v| v.size)
        .sum()
}

/// The pieces `put_bytes` cuts a large buffer into.
const PUT_BYTES_PIECE: usize = 1024 * 1024;
/// A `put_bytes` body up to this size is hashed and sealed whole, the two at once on two
/// blocking threads, into one ciphertext buffer (so it adds at most this much memory); larger
/// ones go through the streaming pipeline in [`PUT_BYTES_PIECE`]s.
const WHOLE_MAX: u64 = 2 * 1024 * 1024;

/// The body of a put: a stream, or a buffer the caller gave whole.
enum PutBody {
    Stream(ByteStream),
    Whole(Bytes),
}

/// Checks a put's options (before the access check: this reveals nothing).
fn check_put_options(opts: &PutOptions) -> Result<()> {
    if let Some(ct) = &opts.content_type {
        validate_content_type(ct)?;
    }
    validate_metadata(&opts.metadata)?;
    if let Some(v) = &opts.if_match {
        check_version_id(v)?;
    }
    Ok(())
}

/// Whether a put with `opts` may go ahead on `head` as last read: `Conflict` when its
/// `if_none_match` or `if_match` condition fails.
fn put_condition(opts: &PutOptions, head: Option<&Head>) -> Result<()> {
    let live = head.and_then(|h| h.manifest.live());
    if opts.if_none_match && live.is_some() {
        return Err(Error::conflict("the key exists (if_none_match)"));
    }
    if let Some(expected) = &opts.if_match
        && live.map(|v| &v.version_id) != Some(expected)
    {
        return Err(Error::conflict(
            "the current version is not the one given (if_match)",
        ));
    }
    Ok(())
}

/// Fails the stream with `QuotaExceeded` once more than `left` bytes have passed (the adapter
/// then abandons the body, so nothing is stored).
/// The error of a body given whole that is larger than what its namespace's quota has left.
fn quota_exceeded(left: u64) -> Error {
    Error::new(
        ErrorCode::QuotaExceeded,
        format!("namespace quota exceeded: the body is larger than the {left} bytes left"),
    )
}

/// Hashes `plain` (its checksum) and seals it as one message under `ctx`, the two at once on
/// two blocking threads. Returns the header, the whole message and the checksum.
async fn seal_whole(
    keys: &NamespaceKeys,
    ctx: &sanctum_crypto::Context<'_>,
    plain: Bytes,
) -> Result<(Vec<u8>, Bytes, String)> {
    let (key_ref, key) = keys.current();
    let (encryptor, header) =
        sanctum_crypto::Encryptor::with_suite(keys.suite(), key, key_ref, ctx)
            .map_err(crate::crypto::crypto_err)?;
    let hashing = hash_on_two_threads(plain.clone());
    let mut message = Vec::with_capacity(
        header.len() + sanctum_crypto::ciphertext_len(plain.len() as u64) as usize,
    );
    message.extend_from_slice(&header);
    let sealing = tokio::task::spawn_blocking(move || {
        encryptor
            .finish_with(&plain, &mut message)
            .map(|()| Bytes::from(message))
            .map_err(crate::crypto::crypto_err)
    });
    let (checksum, sealed) = futures::join!(hashing, sealing);
    let failed = |e: tokio::task::JoinError| {
        Error::new(ErrorCode::Encryption, "encryption worker failed").with_source(e)
    };
    Ok((header, sealed.map_err(failed)??, checksum.map_err(failed)?))
}

/// The checksum of `plain`, its two BLAKE3 subtrees hashed on two blocking threads and merged
/// (BLAKE3 is a tree: the result is exactly `blake3::hash(plain)`). BLAKE3 and AES-GCM each
/// take about 160 µs of one core per MiB on this project's machines (6.4 and 6.8 GB/s), so the
/// hash must not wait for the seal, nor the seal for the hash.
async fn hash_on_two_threads(plain: Bytes) -> std::result::Result<String, tokio::task::JoinError> {
    use blake3::hazmat::{HasherExt, Mode, left_subtree_len, merge_subtrees_root};
    let len = plain.len() as u64;
    if len <= blake3::CHUNK_LEN as u64 {
        return Ok(checksum_string(&blake3::hash(&plain)));
    }
    let split = left_subtree_len(len) as usize;
    let right = plain.slice(split..);
    let left_cv = tokio::task::spawn_blocking(move || {
        blake3::Hasher::new()
            .update(&plain[..split])
            .finalize_non_root()
    });
    let right_cv = tokio::task::spawn_blocking(move || {
        blake3::Hasher::new()
            .set_input_offset(split as u64)
            .update(&right)
            .finalize_non_root()
    });
    let (left_cv, right_cv) = futures::join!(left_cv, right_cv);
    let root = merge_subtrees_root(&left_cv?, &right_cv?, Mode::Hash);
    Ok(checksum_string(&root))
}

fn cap_stream(body: ByteStream, left: u64) -> ByteStream {
    let mut seen = 0u64;
    body.map(move |item| {
        let chunk = item?;
        seen += chunk.len() as u64;
        if seen > left {
            return Err(Error::new(
                ErrorCode::QuotaExceeded,
                format!("namespace quota exceeded: the body is larger than the {left} bytes left"),
            ));
        }
        Ok(chunk)
    })
    .boxed()
}

impl BlobStore {
    /// A facade over `adapter`. Prefer [`create_storage_client`](crate::create_storage_client),
    /// which admits the adapter through the registry first.
    pub fn new(
        adapter: Arc<dyn BlobAdapter>,
        keys: Arc<KeyManager>,
        clock: Arc<dyn Clock>,
        audit: Arc<dyn AuditSink>,
        settings: BlobSettings,
    ) -> Self {
        let access = AccessSettings::default();
        Self {
            access: Arc::new(Authorizer::new(
                access.clone(),
                adapter.clone(),
                audit.clone(),
                clock.clone(),
            )),
            quotas: Arc::new(QuotaLedger::new(adapter.clone(), access.cache_ttl)),
            adapter,
            keys,
            clock,
            audit,
            settings,
        }
    }

    /// The same facade deciding access as `settings` say (engine, superusers, cache time).
    /// The default is the built-in engine with no superusers: nothing is allowed until granted.
    pub fn with_access(self, settings: AccessSettings) -> Self {
        Self {
            quotas: Arc::new(QuotaLedger::new(self.adapter.clone(), settings.cache_ttl)),
            access: Arc::new(Authorizer::new(
                settings,
                self.adapter.clone(),
                self.audit.clone(),
                self.clock.clone(),
            )),
            ..self
        }
    }

    /// A shared handle to the access checker (records check with the same one).
    /// The quota ledger the records check their limits with.
    pub(crate) fn quota_ledger(&self) -> Arc<QuotaLedger> {
        self.quotas.clone()
    }

    pub(crate) fn authorizer_arc(&self) -> Arc<Authorizer> {
        self.access.clone()
    }

    /// The access checker every operation goes through.
    pub fn authorizer(&self) -> &Authorizer {
        &self.access
    }

    /// The adapter underneath.
    pub fn adapter(&self) -> &Arc<dyn BlobAdapter> {
        &self.adapter
    }

    /// The key manager the facade encrypts with.
    pub fn keys(&self) -> &Arc<KeyManager> {
        &self.keys
    }

    /// The namespace's keys for reading existing data: a namespace with data but no keys has
    /// lost them (shredded or damaged), which is an `Encryption` error.
    pub(super) async fn read_keys(
        &self,
        ctx: &StorageContext,
        ns: &str,
    ) -> Result<Arc<NamespaceKeys>> {
        self.keys
            .namespace(ctx.tenant().as_str(), ns, false)
            .await
            .map_err(|e| {
                e.missing_means(ErrorCode::Encryption, "the keys of this data are missing")
            })
    }

    /// Stores a new version of `key` from a byte stream and returns it.
    ///
    /// The body streams to the adapter with bounded buffering; it is hashed (BLAKE3) on the way.
    /// With `if_match` or `if_none_match`, a failed condition is `Conflict` and stores nothing.
    /// Without them, a concurrent writer never causes a lost update: the write retries its
    /// compare-and-swap on the newest head.
    pub async fn put<S>(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        body: S,
        opts: PutOptions,
    ) -> Result<ObjectVersion>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    {
        let body = body
            .map_err(|e| Error::invalid("reading the request body failed").with_source(e))
            .boxed();
        observe(
            "blob.put",
            self.adapter.as_ref(),
            ctx,
            self.put_inner(ctx, ns, key, PutBody::Stream(body), opts),
        )
        .await
    }

    /// Stores a new version of `key` read from `reader`. See [`put`](Self::put).
    pub async fn put_reader<R>(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        reader: R,
        opts: PutOptions,
    ) -> Result<ObjectVersion>
    where
        R: AsyncRead + Send + 'static,
    {
        self.put(
            ctx,
            ns,
            key,
            tokio_util::io::ReaderStream::with_capacity(reader, READER_CHUNK),
            opts,
        )
        .await
    }

    /// Stores a new version of `key` from one buffer. See [`put`](Self::put).
    pub async fn put_bytes(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        body: impl Into<Bytes>,
        opts: PutOptions,
    ) -> Result<ObjectVersion> {
        let body = body.into();
        if body.len() as u64 <= sealing::SMALL_MAX && !self.settings.clear() {
            return observe(
                "blob.put",
                self.adapter.as_ref(),
                ctx,
                self.put_small(ctx, ns, key, body, opts),
            )
            .await;
        }
        if body.len() as u64 <= WHOLE_MAX && !self.settings.clear() {
            return observe(
                "blob.put",
                self.adapter.as_ref(),
                ctx,
                self.put_inner(ctx, ns, key, PutBody::Whole(body), opts),
            )
            .await;
        }
        // Zero-copy slices of the caller's buffer, so the pipeline holds a few pieces of it at a
        // time and never a copy of the whole (the memory bound of a streamed put).
        let len = body.len();
        let pieces = futures::stream::iter(
            (0..len)
                .step_by(PUT_BYTES_PIECE)
                .map(move |start| Ok(body.slice(start..(start + PUT_BYTES_PIECE).min(len)))),
        );
        self.put(ctx, ns, key, pieces, opts).await
    }

    /// A small body given whole: its metadata and body are sealed as one message
    /// ([`sealing::seal_small`]), written as the body object and inlined in the head, so that a
    /// read derives one message key instead of two. Otherwise as [`put_inner`](Self::put_inner).
    async fn put_small(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        body: Bytes,
        opts: PutOptions,
    ) -> Result<ObjectVersion> {
        let (_, paths) = KeyPaths::new(ctx, ns, key)?;
        check_put_options(&opts)?;
        self.access
            .check(ctx, "blob.put", Action::Write, ns, Some(key))
            .await?;
        let tenant = ctx.tenant().as_str();
        let size = body.len() as u64;
        if self
            .quotas
            .limits(tenant, ns)
            .await?
            .and_then(|l| l.max_bytes)
            .is_some()
            && let Some(left) = self.quotas.bytes_left(tenant, ns).await?
            && size > left
        {
            return Err(quota_exceeded(left));
        }
        let conditional = opts.if_match.is_some() || opts.if_none_match;
        let check = |head: Option<&Head>| put_condition(&opts, head);
        let head = self.read_head(&paths.head).await?;
        check(head.as_ref())?;
        let keys = self.keys.namespace(tenant, ns, true).await?;
        let place = Place {
            clear: false,
            tenant,
            namespace: ns,
            key,
        };
        let body_id = new_id(self.clock.as_ref());
        let version_id = new_id(self.clock.as_ref());
        let sealed = Sealed {
            checksum: checksum_string(&blake3::hash(&body)),
            content_type: opts.content_type.clone(),
            metadata: opts.metadata.clone(),
        };
        let small = sealing::seal_small(&keys, place, &body_id, &sealed, &body)?;
        let now = self.clock.now_ms();
        let stored = StoredVersion {
            version_id: version_id.clone(),
            body_id: Some(body_id.clone()),
            size,
            created_at_ms: now,
            body_created_at_ms: now,
            tombstone: false,
            restored_from: None,
            body_header: Some(small.header),
            // Kept beside the combined message, so that listings and history need no body read.
            sealed: Some(sealing::seal(&keys, place, &version_id, &sealed)?),
            seq: 0,
            lineage: None,
            combined_len: Some(small.plaintext_len),
            // Inlined: the head holds the message, and the body object is written only when
            // another version becomes current (`commit`), which saves a file per small put.
            body_deferred: size <= self.settings.inline_threshold,
            prev: None,
            tag: None,
        };
        let message = small.message;
        let body_path = paths.body(&body_id)?;
        if !stored.body_deferred {
            // Body ids are fresh, so an unconditional put is safe; the body is durable before
            // the head names it.
            self.adapter
                .put(&body_path, once_stream(message.clone()), PutMode::Overwrite)
                .await?;
        }
        let append = Append {
            version: &stored,
            keys: &keys,
            place,
            inline: Some(&message),
            retry: !conditional,
            ready: None,
        };
        let charge = Charge {
            bytes: size as i64,
            objects: i64::from(head.as_ref().and_then(|h| h.manifest.live()).is_none()),
        };
        let committed = match self.quotas.charge(tenant, ns, charge).await {
            Ok(charged) => {
                let committed = self.commit(&paths, head, append, &check).await;
                if charged {
                    self.settle_commit(ctx, ns, charge, &committed).await;
                }
                committed
            }
            Err(e) => Err(e),
        };
        if committed.is_err() {
            // Not committed: the body is ours alone. Failing to delete it leaves work for the sweeper.
            let _ = self.adapter.delete(&body_path, None).await;
        }
        committed?;
        Ok(sealing::with_sealed(&stored, sealed))
    }

    async fn put_inner(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        body: PutBody,
        opts: PutOptions,
    ) -> Result<ObjectVersion> {
        let (_, paths) = KeyPaths::new(ctx, ns, key)?;
        check_put_options(&opts)?;
        self.access
            .check(ctx, "blob.put", Action::Write, ns, Some(key))
            .await?;
        let tenant = ctx.tenant().as_str();
        // With a byte quota, the body may not grow past what is left; the final charge (a CAS
        // on the quota document) settles races between writers.
        let quota = self.quotas.limits(tenant, ns).await?;
        let left = match quota.and_then(|l| l.max_bytes) {
            Some(_) => self.quotas.bytes_left(tenant, ns).await?,
            None => None,
        };
        let body = match (body, left) {
            (PutBody::Whole(bytes), Some(left)) if bytes.len() as u64 > left => {
                return Err(quota_exceeded(left));
            }
            (PutBody::Stream(body), Some(left)) => PutBody::Stream(cap_stream(body, left)),
            (body, _) => body,
        };
        let conditional = opts.if_match.is_some() || opts.if_none_match;
        let check = |head: Option<&Head>| put_condition(&opts, head);
        // A conditional put reads the head first, to fail before streaming a body that cannot
        // win; an unconditional one reads it while the body streams.
        let early_head = match conditional {
            true => {
                let head = self.read_head(&paths.head).await?;
                check(head.as_ref())?;
                Some(head)
            }
            false => None,
        };

        let keys = self.keys.namespace(ctx.tenant().as_str(), ns, true).await?;
        let place = Place {
            clear: self.settings.clear(),
            tenant: ctx.tenant().as_str(),
            namespace: ns,
            key,
        };
        let body_id = new_id(self.clock.as_ref());
        let body_path = paths.body(&body_id)?;
        // Plaintext: hashed and counted. Ciphertext: kept whole when small, for inlining.
        let plain_tap = Tap::new(0, true);
        let (header, cipher, whole) = match body {
            PutBody::Whole(bytes) => {
                let (header, cipher, checksum) =
                    seal_whole(&keys, &place.body(&body_id), bytes.clone()).await?;
                let size = bytes.len() as u64;
                (header, once_stream(cipher), Some((checksum, size)))
            }
            PutBody::Stream(body) => {
                let (plain, _) = plain_tap.wrap(body);
                let (header, cipher) = if place.clear {
                    (Vec::new(), plain)
                } else {
                    encrypt_stream(&keys, &place.body(&body_id), plain)?
                };
                (header, cipher, None)
            }
        };
        let cipher_limit =
            header.len() as u64 + sanctum_crypto::ciphertext_len(self.settings.inline_threshold);
        let cipher_tap = Tap::new(cipher_limit, false);
        let (cipher, ended) = cipher_tap.wrap(cipher);
        let (durable_tx, durable_rx) = oneshot::channel::<bool>();
        // The body streams to the adapter; once its last byte has passed the tap, the head is
        // built and staged while the body is made durable, and committed only after that.
        let write_body = async {
            // Body ids are fresh, so an unconditional put is safe, and it lets object stores
            // stream large bodies as multipart uploads (which are never conditional).
            let written = self
                .adapter
                .put(&body_path, cipher, PutMode::Overwrite)
                .await;
            let _ = durable_tx.send(written.is_ok());
            written
        };
        let write_head = async {
            let head = match early_head {
                Some(head) => head,
                None => self.read_head(&paths.head).await?,
            };
            ended
                .await
                .map_err(|_| Error::invalid("the body stream did not end"))?;
            let new_key = head.as_ref().and_then(|h| h.manifest.live()).is_none();
            let plain = match whole {
                Some((checksum, size)) => super::stream::Tapped {
                    checksum,
                    size,
                    inline: None,
                },
                None => plain_tap.finish(),
            };
            let inline = cipher_tap
                .finish()
                .inline
                .filter(|_| plain.size <= self.settings.inline_threshold);
            let now = self.clock.now_ms();
            let version_id = new_id(self.clock.as_ref());
            let sealed = Sealed {
                checksum: plain.checksum,
                content_type: opts.content_type.clone(),
                metadata: opts.metadata.clone(),
            };
            let stored = StoredVersion {
                version_id: version_id.clone(),
                body_id: Some(body_id.clone()),
                size: plain.size,
                created_at_ms: now,
                body_created_at_ms: now,
                tombstone: false,
                restored_from: None,
                body_header: (!header.is_empty()).then(|| sealing::hex(&header)),
                sealed: Some(sealing::seal(&keys, place, &version_id, &sealed)?),
                // Set by `commit`, which knows the head it commits on.
                seq: 0,
                lineage: None,
                combined_len: None,
                body_deferred: false,
                prev: None,
                tag: None,
            };
            let body_durable: BoxFuture<'static, Result<()>> = Box::pin(async move {
                match durable_rx.await {
                    Ok(true) => Ok(()),
                    _ => Err(Error::new(
                        ErrorCode::PermanentAdapter,
                        "the body write failed",
                    )),
                }
            });
            let append = Append {
                version: &stored,
                keys: &keys,
                place,
                inline: inline.as_deref(),
                retry: !conditional,
                ready: Some(body_durable),
            };
            let charge = Charge {
                bytes: plain.size as i64,
                objects: i64::from(new_key),
            };
            let charged = self.quotas.charge(tenant, ns, charge).await?;
            let committed = self.commit(&paths, head, append, &check).await;
            if charged {
                self.settle_commit(ctx, ns, charge, &committed).await;
            }
            committed?;
            Ok(sealing::with_sealed(&stored, sealed))
        };
        let (body_written, committed) = futures::join!(write_body, write_head);
        // A failed body write stored nothing; report its error rather than the head's.
        body_written?;
        if committed.is_err() {
            // Not committed: the body is ours alone. Failing to delete it leaves work for the sweeper.
            let _ = self.adapter.delete(&body_path, None).await;
        }
        committed
    }

    /// Reads `key` (its current version, a given version, and/or a byte range) as a stream.
    pub async fn get(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        opts: GetOptions,
    ) -> Result<BlobRead> {
        let read = observe(
            "blob.get",
            self.adapter.as_ref(),
            ctx,
            self.get_inner(ctx, ns, key, opts),
        )
        .await?;
        Ok(BlobRead {
            body: observe_stream("blob.get", read.body),
            ..read
        })
    }

    /// Reads a whole object into memory (convenience for small objects).
    pub async fn get_bytes(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        opts: GetOptions,
    ) -> Result<(ObjectVersion, Bytes)> {
        let read = self.get(ctx, ns, key, opts).await?;
        let bytes = collect_bytes(read.body).await?;
        Ok((read.version, bytes))
    }

    async fn get_inner(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        opts: GetOptions,
    ) -> Result<BlobRead> {
        check_read_mode(ctx)?;
        let (_, paths) = KeyPaths::new(ctx, ns, key)?;
        if let Some(v) = &opts.version {
            check_version_id(v)?;
        }
        self.access
            .check(ctx, "blob.get", Action::Read, ns, Some(key))
            .await?;
        let place = Place {
            clear: self.settings.clear(),
            tenant: ctx.tenant().as_str(),
            namespace: ns,
            key,
        };
        let before = sealing::mark_before(self.keys.high_water(), place);
        let head = self
            .read_head(&paths.head)
            .await?
            .ok_or_else(|| paths.missing())?;
        let current = head.manifest.live().ok_or_else(|| paths.missing())?;
        let stored = match &opts.version {
            None => current.clone(),
            Some(id) => self
                .find_version(&paths, &head.manifest, id)
                .await?
                .filter(|v| !v.tombstone)
                .ok_or_else(|| paths.missing_version(id))?,
        };
        let keys = self.read_keys(ctx, ns).await?;
        sealing::check_fresh(
            self.keys.high_water(),
            place,
            before.as_ref(),
            head.manifest.current(),
        )?;
        if stored.combined_len.is_some() {
            let inline = head
                .inline
                .filter(|_| stored.version_id == current.version_id);
            return self
                .get_small(&paths, &keys, place, &stored, inline, &opts)
                .await;
        }
        let public = sealing::public(&keys, place, &stored)?;
        let range = match opts.range {
            Some(r) => r.resolve(stored.size)?,
            None => 0..stored.size,
        };
        let full = range.start == 0 && range.end == stored.size;
        let body_id = stored
            .body_id
            .as_deref()
            .ok_or_else(|| Error::consistency("version without a body"))?;
        if place.clear {
            // Benchmarks only: the body is stored as is.
            let body = match head
                .inline
                .filter(|_| stored.version_id == current.version_id)
            {
                Some(bytes) => once_stream(bytes.slice(range.start as usize..range.end as usize)),
                None => {
                    self.adapter
                        .get(&paths.body(body_id)?, Some(range.clone()))
                        .await?
                        .body
                }
            };
            return Ok(BlobRead {
                version: public,
                range,
                body,
            });
        }
        let (header, header_bytes) = sealing::body_header(&stored)?;
        let header_len = header_bytes.len() as u64;
        let mut spec = DecryptSpec {
            header,
            header_bytes,
            with_header: true,
            first_chunk: 0,
            skip: range.start,
            take: range.end - range.start,
            to_end: true,
        };
        let inline = head
            .inline
            .filter(|_| stored.version_id == current.version_id);
        let body = match inline {
            Some(message) => {
                // The whole (small) message is here: open it in one go, without the streaming
                // decryptor's buffering. The manifest's header must be the message's.
                let key = keys.key_for(&spec.header.key_ref)?;
                let plaintext = sanctum_crypto::decrypt(
                    key,
                    &spec.header,
                    header_len as usize,
                    &place.body(body_id),
                    &message,
                )
                .map_err(crate::crypto::crypto_err)?;
                if plaintext.len() as u64 != stored.size {
                    return Err(Error::consistency(
                        "body size differs from the version's size",
                    ));
                }
                once_stream(Bytes::from(plaintext).slice(range.start as usize..range.end as usize))
            }
            None if full
                && stored.size >= parts::PARTS_MIN
                && self.adapter.capabilities().parallel_ranged_reads =>
            {
                parts::read(
                    parts::Message {
                        adapter: self.adapter.clone(),
                        path: paths.body(body_id)?,
                        object_len: stored.body_object_len(),
                        key: keys.key_for(&spec.header.key_ref)?.clone(),
                        header: spec.header,
                        header_bytes: spec.header_bytes,
                        tenant: place.tenant.to_owned(),
                        namespace: place.namespace.to_owned(),
                        object_key: place.key.to_owned(),
                        body_id: body_id.to_owned(),
                    },
                    stored.size,
                )
            }
            None => {
                // A range reads only the chunks that cover it.
                let wanted = if full {
                    None
                } else {
                    let span = sanctum_crypto::chunk_span(range.clone(), stored.size);
                    spec = DecryptSpec {
                        with_header: false,
                        first_chunk: span.first_chunk,
                        skip: span.skip,
                        to_end: span.includes_final,
                        ..spec
                    };
                    Some(header_len + span.ciphertext.start..header_len + span.ciphertext.end)
                };
                let body = self.read_body(&paths, &stored, wanted).await?;
                decrypt_stream(&keys, &place.body(body_id), spec, body)?
            }
        };
        let body = if full && opts.verify_checksum {
            Verify::wrap(body, public.checksum.clone())
        } else {
            body
        };
        Ok(BlobRead {
            version: public,
            range,
            body,
        })
    }

    /// The body object of `stored` (or bytes `range` of it), checked to have the size the
    /// version implies. A missing body object of a committed version is a `Consistency` error.
    pub(super) async fn read_body(
        &self,
        paths: &KeyPaths,
        stored: &StoredVersion,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<ByteStream> {
        let body_id = stored
            .body_id
            .as_deref()
            .ok_or_else(|| Error::consistency("version without a body"))?;
        let got = self
            .adapter
            .get(&paths.body(body_id)?, range)
            .await
            .map_err(missing_body)?;
        if got.meta.size != stored.body_object_len() {
            return Err(wrong_body_size());
        }
        Ok(got.body)
    }

    /// Reads a version whose metadata and body are one combined message: from the head when
    /// inlined, else the body object; one key derivation for both.
    async fn get_small(
        &self,
        paths: &KeyPaths,
        keys: &NamespaceKeys,
        place: Place<'_>,
        stored: &StoredVersion,
        inline: Option<Bytes>,
        opts: &GetOptions,
    ) -> Result<BlobRead> {
        sealing::verify(keys, place, stored)?;
        let message = match inline {
            Some(message) => message,
            None => collect_bytes(self.read_body(paths, stored, None).await?).await?,
        };
        let (sealed, body) = sealing::open_small(keys, place, stored, &message)?;
        let range = match &opts.range {
            Some(r) => r.resolve(stored.size)?,
            None => 0..stored.size,
        };
        // The message authenticated the body already; a requested check re-hashes it anyway.
        if opts.verify_checksum
            && range == (0..stored.size)
            && checksum_string(&blake3::hash(&body)) != sealed.checksum
        {
            return Err(Error::consistency("body does not match its checksum"));
        }
        let version = sealing::with_sealed(stored, sealed);
        Ok(BlobRead {
            version,
            body: once_stream(body.slice(range.start as usize..range.end as usize)),
            range,
        })
    }

    /// The current version of `key`; `NotFound` if it does not exist or is deleted.
    pub async fn head(&self, ctx: &StorageContext, ns: &str, key: &str) -> Result<StorageObject> {
        observe("blob.head", self.adapter.as_ref(), ctx, async {
            check_read_mode(ctx)?;
            let (ns, paths) = KeyPaths::new(ctx, ns, key)?;
            self.access
                .check(ctx, "blob.head", Action::Read, ns.name(), Some(key))
                .await?;
            let place = Place {
                clear: self.settings.clear(),
                tenant: ctx.tenant().as_str(),
                namespace: ns.name(),
                key,
            };
            let before = sealing::mark_before(self.keys.high_water(), place);
            let head = self
                .read_head(&paths.head)
                .await?
                .ok_or_else(|| paths.missing())?;
            let stored = head.manifest.live().ok_or_else(|| paths.missing())?;
            let keys = self.read_keys(ctx, ns.name()).await?;
            sealing::check_fresh(
                self.keys.high_water(),
                place,
                before.as_ref(),
                head.manifest.current(),
            )?;
            let version = sealing::public(&keys, place, stored)?;
            Ok(StorageObject {
                namespace: ns.name().to_string(),
                key: key.to_string(),
                version,
            })
        })
        .await
    }

    /// Deletes `key` by appending a tombstone version; history stays and
    /// [`restore`](Self::restore) can bring a version back. Returns the tombstone.
    pub async fn delete(&self, ctx: &StorageContext, ns: &str, key: &str) -> Result<ObjectVersion> {
        observe("blob.delete", self.adapter.as_ref(), ctx, async {
            let (ns, paths) = KeyPaths::new(ctx, ns, key)?;
            self.access
                .check(ctx, "blob.delete", Action::Write, ns.name(), Some(key))
                .await?;
            let check = |head: Option<&Head>| -> Result<()> {
                head.and_then(|h| h.manifest.live())
                    .map(|_| ())
                    .ok_or_else(|| paths.missing())
            };
            let head = self.read_head(&paths.head).await?;
            check(head.as_ref())?;
            let keys = self.read_keys(ctx, ns.name()).await?;
            let place = Place {
                clear: self.settings.clear(),
                tenant: ctx.tenant().as_str(),
                namespace: ns.name(),
                key,
            };
            let now = self.clock.now_ms();
            let tombstone = StoredVersion {
                version_id: new_id(self.clock.as_ref()),
                body_id: None,
                size: 0,
                created_at_ms: now,
                body_created_at_ms: now,
                tombstone: true,
                restored_from: None,
                body_header: None,
                sealed: None,
                seq: 0,
                lineage: None,
                combined_len: None,
                body_deferred: false,
                prev: None,
                tag: None,
            };
            let append = Append {
                version: &tombstone,
                keys: &keys,
                place,
                inline: None,
                retry: true,
                ready: None,
            };
            let was_live = self.commit(&paths, head, append, check).await?;
            self.audit_event(
                ctx,
                "blob.delete",
                Some(&ns),
                Some(key),
                Some(&tombstone.version_id),
            );
            // The key is no longer live: free its object.
            let freed = Charge {
                bytes: 0,
                objects: -i64::from(was_live),
            };
            self.settle_usage(ctx, ns.name(), freed).await;
            Ok(sealing::with_sealed(&tombstone, Sealed::empty()))
        })
        .await
    }

    /// Every version of `key`, newest first, tombstones included.
    pub async fn versions(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
    ) -> Result<Vec<ObjectVersion>> {
        observe("blob.versions", self.adapter.as_ref(), ctx, async {
            check_read_mode(ctx)?;
            let (_, paths) = KeyPaths::new(ctx, ns, key)?;
            self.access
                .check(ctx, "blob.versions", Action::Read, ns, Some(key))
                .await?;
            let place = Place {
                clear: self.settings.clear(),
                tenant: ctx.tenant().as_str(),
                namespace: ns,
                key,
            };
            let before = sealing::mark_before(self.keys.high_water(), place);
            let head = self
                .read_head(&paths.head)
                .await?
                .ok_or_else(|| paths.missing())?;
            if head.manifest.purged || head.manifest.is_empty() {
                return Err(paths.missing());
            }
            let mut all = head.manifest.versions()?;
            for page_id in &head.manifest.history_pages {
                all.extend(self.read_page(&paths, page_id).await?);
            }
            let keys = self.read_keys(ctx, ns).await?;
            sealing::check_fresh(
                self.keys.high_water(),
                place,
                before.as_ref(),
                head.manifest.current(),
            )?;
            sealing::verify_chain(&keys, place, &all)?;
            all.iter()
                .map(|v| sealing::public(&keys, place, v))
                .collect()
        })
        .await
    }

    /// Makes `version_id` current again by appending a new version that points at its body
    /// (no copy). Works on deleted keys too. Returns the new version.
    pub async fn restore(
        &self,
        ctx: &StorageContext,
        ns: &str,
        key: &str,
        version_id: &str,
    ) -> Result<ObjectVersion> {
        observe("blob.restore", self.adapter.as_ref(), ctx, async {
            let (ns, paths) = KeyPaths::new(ctx, ns, key)?;
            check_version_id(version_id)?;
            self.access
                .check(ctx, "blob.restore", Action::Restore, ns.name(), Some(key))
                .await?;
            let head = self.read_head(&paths.head).await?;
            let manifest = head
                .as_ref()
                .map(|h| &h.manifest)
                .filter(|m| !m.purged)
                .ok_or_else(|| paths.missing())?;
            let old = self
                .find_version(&paths, manifest, version_id)
                .await?
                .filter(|v| !v.tombstone)
                .ok_or_else(|| paths.missing_version(version_id))?;
            let body_id = old
                .body_id
                .clone()
                .ok_or_else(|| Error::consistency("version without a body"))?;
            let missing = |e: Error| {
                e.missing_means(
                    ErrorCode::Consistency,
                    "the body of the version to restore is missing",
                )
            };
            let body_path = paths.body(&body_id)?;
            // The current version's body may live only in the head (`body_deferred`).
            let current_inline = head
                .as_ref()
                .filter(|h| h.manifest.current().map(|c| &c.version_id) == Some(&old.version_id))
                .and_then(|h| h.inline.clone());
            let inline = if let Some(message) = current_inline {
                Some(message)
            } else if old.size <= self.settings.inline_threshold {
                let got = self.adapter.get(&body_path, None).await.map_err(missing)?;
                Some(collect_bytes(got.body).await?)
            } else {
                self.adapter.head(&body_path).await.map_err(missing)?;
                None
            };
            // The body is reused as is (its context names the body, not the version); the
            // metadata is sealed anew for the new version id.
            let keys = self.read_keys(ctx, ns.name()).await?;
            let place = Place {
                clear: self.settings.clear(),
                tenant: ctx.tenant().as_str(),
                namespace: ns.name(),
                key,
            };
            let sealed = sealing::unseal(&keys, place, &old)?;
            let version_id = new_id(self.clock.as_ref());
            let version = StoredVersion {
                version_id: version_id.clone(),
                created_at_ms: self.clock.now_ms(),
                restored_from: Some(old.version_id.clone()),
                sealed: Some(sealing::seal(&keys, place, &version_id, &sealed)?),
                ..old
            };
            let check = |head: Option<&Head>| -> Result<()> {
                head.filter(|h| !h.manifest.purged)
                    .map(|_| ())
                    .ok_or_else(|| paths.missing())
            };
            let append = Append {
                version: &version,
                keys: &keys,
                place,
                inline: inline.as_deref(),
                retry: true,
                ready: None,
            };
            // Restoring a deleted key makes it live again: one more object (no new body).
            let revived = Charge {
                bytes: 0,
                objects: i64::from(manifest.live().is_none()),
            };
            let tenant = ctx.tenant().as_str();
            let charged = self.quotas.charge(tenant, ns.name(), revived).await?;
            let committed = self.commit(&paths, head, append, check).await;
            if charged {
                self.settle_commit(ctx, ns.name(), revived, &committed)
                    .await;
            }
            committed?;
            self.audit_event(
                ctx,
                "blob.restore",
                Some(&ns),
                Some(key),
                Some(&version.version_id),
            );
            Ok(sealing::with_sealed(&version, sealed))
        })
        .await
    }

    /// Removes `key` entirely: its head, every version's body and its history (the GDPR path).
    pub async fn purge(&self, ctx: &StorageContext, ns: &str, key: &str) -> Result<()> {
        observe("blob.purge", self.adapter.as_ref(), ctx, async {
            let (ns, paths) = KeyPaths::new(ctx, ns, key)?;
            self.access
                .check(ctx, "blob.purge", Action::Purge, ns.name(), Some(key))
                .await?;
            // 1. Mark the head purged (CAS), so writers racing with us start a fresh key.
            let mut head = self.read_head(&paths.head).await?;
            let mut attempts = 0;
            let (old, marker_etag) = loop {
                attempts += 1;
                if attempts > MAX_CAS_ATTEMPTS {
                    return Err(Error::conflict(
                        "gave up after repeated concurrent writes to the key",
                    ));
                }
                let current = head
                    .as_ref()
                    .filter(|h| !h.manifest.purged)
                    .ok_or_else(|| paths.missing())?;
                let bytes = manifest::encode(&HeadManifest::purged_marker(), None)?;
                match self
                    .adapter
                    .put(
                        &paths.head,
                        once_stream(bytes),
                        PutMode::Update(current.etag.clone()),
                    )
                    .await
                {
                    Ok(meta) => break (head.take().expect("checked above").manifest, meta.etag),
                    Err(e) if e.code() == ErrorCode::Conflict => {
                        head = self.read_head(&paths.head).await?
                    }
                    Err(e) => return Err(e),
                }
            };
            // 2. Delete every body and page the old history referenced.
            let mut doomed: Vec<BlobPath> = Vec::new();
            let mut versions = old.versions()?;
            for page_id in &old.history_pages {
                versions.extend(self.read_page(&paths, page_id).await?);
                doomed.push(paths.page(page_id)?);
            }
            let freed = Charge {
                bytes: -(body_bytes(&versions) as i64),
                objects: -i64::from(old.live().is_some()),
            };
            let bodies: HashSet<&str> = versions
                .iter()
                .filter_map(|v| v.body_id.as_deref())
                .collect();
            for body_id in bodies {
                doomed.push(paths.body(body_id)?);
            }
            for path in doomed {
                match self.adapter.delete(&path, None).await {
                    Ok(()) => {}
                    Err(e) if e.code() == ErrorCode::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            // 3. Remove the marker, unless a writer already replaced it with a new key. Only
            // where that check and the delete are one atomic step: elsewhere a writer could
            // commit between them and lose its version, so the marker (which reads as absent)
            // stays until the key is written again.
            if self.adapter.capabilities().atomic_conditional_delete {
                match self.adapter.delete(&paths.head, Some(&marker_etag)).await {
                    Ok(()) => {}
                    Err(e) if matches!(e.code(), ErrorCode::Conflict | ErrorCode::NotFound) => {}
                    Err(e) => return Err(e),
                }
            }
            self.audit_event(ctx, "blob.purge", Some(&ns), Some(key), None);
            self.settle_usage(ctx, ns.name(), freed).await;
            Ok(())
        })
        .await
    }

    /// Lists live objects whose keys start with `opts.prefix`, in key byte order, a page at a time.
    pub async fn list(
        &self,
        ctx: &StorageContext,
        ns: &str,
        opts: ListOptions,
    ) -> Result<BlobList> {
        observe(
            "blob.list",
            self.adapter.as_ref(),
            ctx,
            self.list_inner(ctx, ns, opts),
        )
        .await
    }

    async fn list_inner(
        &self,
        ctx: &StorageContext,
        ns: &str,
        opts: ListOptions,
    ) -> Result<BlobList> {
        check_read_mode(ctx)?;
        let ns = Namespace::new(ctx.tenant(), ns)?;
        validate_prefix(&opts.prefix)?;
        // A listing is a read of its prefix: a grant limited to keys under `p/` may list `p/`.
        let prefix = Some(opts.prefix.as_str()).filter(|p| !p.is_empty());
        self.access
            .check(ctx, "blob.list", Action::List, ns.name(), prefix)
            .await?;
        if opts.limit == 0 || opts.limit > MAX_LIST_LIMIT {
            return Err(Error::invalid(format!(
                "list limit must be 1-{MAX_LIST_LIMIT}"
            )));
        }
        let layout = Layout::new(&ns);
        let path_prefix = layout.head_prefix(&opts.prefix);
        let tenant = ctx.tenant().as_str();
        let mut after = match &opts.cursor {
            Some(c) => Some(
                layout
                    .head(&decode_cursor(tenant, ns.name(), c)?)?
                    .as_str()
                    .to_string(),
            ),
            None => None,
        };
        let mut objects = Vec::new();
        let mut damaged = Vec::new();
        let mut keys: Option<Arc<NamespaceKeys>> = None;
        loop {
            let want = opts.limit - objects.len();
            let page = self
                .adapter
                .list(&path_prefix, after.as_deref(), want)
                .await?;
            let Some(last) = page.entries.last() else {
                return Ok(BlobList {
                    objects,
                    next_cursor: None,
                    damaged,
                });
            };
            after = Some(last.path.as_str().to_string());
            // A head that cannot be read or decoded is the key's damage, not the listing's.
            type Read = (String, Option<Mark>, Result<Option<Head>>);
            let heads: Vec<Read> = futures::stream::iter(page.entries.iter())
                .map(|entry| async {
                    let key = layout.key_of_head(entry.path.as_str())?;
                    let place = Place {
                        clear: self.settings.clear(),
                        tenant,
                        namespace: ns.name(),
                        key: &key,
                    };
                    let before = sealing::mark_before(self.keys.high_water(), place);
                    let head = self.read_head(&entry.path).await;
                    Ok::<_, Error>((key, before, head))
                })
                .buffered(LIST_CONCURRENCY)
                .try_collect()
                .await?;
            let last_key = heads.last().map(|(k, _, _)| k.clone());
            for (key, before, head) in heads {
                let version = match head {
                    Ok(head) => match head.as_ref().and_then(|h| h.manifest.live()) {
                        Some(stored) => {
                            let keys = match &keys {
                                Some(keys) => keys.clone(),
                                None => keys.insert(self.read_keys(ctx, ns.name()).await?).clone(),
                            };
                            let place = Place {
                                clear: self.settings.clear(),
                                tenant,
                                namespace: ns.name(),
                                key: &key,
                            };
                            let current = head.as_ref().and_then(|h| h.manifest.current());
                            sealing::check_fresh(
                                self.keys.high_water(),
                                place,
                                before.as_ref(),
                                current,
                            )
                            .and_then(|()| sealing::public(&keys, place, stored))
                        }
                        None => continue,
                    },
                    Err(e) => Err(e),
                };
                match version {
                    Ok(version) => objects.push(StorageObject {
                        namespace: ns.name().to_string(),
                        key,
                        version,
                    }),
                    Err(e) if !is_damage(&e) => return Err(e),
                    Err(e) if opts.skip_damaged => damaged.push(DamagedKey {
                        error: format!("{}: {}", e.code(), e.message()),
                        key,
                    }),
                    Err(e) => {
                        return Err(Error::new(
                            e.code(),
                            format!(
                                "key '{}' in namespace '{}' is damaged ({}); list past it with \
                                 skip_damaged (`sanctum blob ls --skip-damaged`), and restore \
                                 the key from a backup",
                                key.escape_debug(),
                                ns.name(),
                                e.message()
                            ),
                        )
                        .with_source(e));
                    }
                }
            }
            if !page.more {
                return Ok(BlobList {
                    objects,
                    next_cursor: None,
                    damaged,
                });
            }
            if objects.len() >= opts.limit {
                return Ok(BlobList {
                    objects,
                    next_cursor: last_key
                        .as_deref()
                        .map(|k| encode_cursor(tenant, ns.name(), k)),
                    damaged,
                });
            }
        }
    }

    /// Deletes bodies and history pages of `ns` that no head references and that are older than
    /// `grace` (left by crashed or dropped writers, or by a purge that failed part-way), and
    /// what interrupted writes left in the adapter ([`BlobAdapter::sweep_leftovers`]) under the
    /// namespace, its key record and the tenant's grants. Leftovers do not say which path they
    /// were for, so the local adapter also removes those of the tenant's other namespaces' key
    /// records (they share a folder) and of its own health probes.
    pub async fn sweep(
        &self,
        ctx: &StorageContext,
        ns: &str,
        grace: Duration,
    ) -> Result<SweepReport> {
        observe("blob.sweep", self.adapter.as_ref(), ctx, async {
            let ns = Namespace::new(ctx.tenant(), ns)?;
            self.access
                .check(ctx, "blob.sweep", Action::Sweep, ns.name(), None)
                .await?;
            let layout = Layout::new(&ns);
            let cutoff = self.clock.now_ms().saturating_sub(grace.as_millis() as u64);
            let mut report = SweepReport::default();
            for kind in ['b', 'p'] {
                let prefix = layout.kind_prefix(kind);
                let mut after: Option<String> = None;
                let mut referenced: Option<(String, HashSet<String>)> = None;
                loop {
                    let page = self
                        .adapter
                        .list(&prefix, after.as_deref(), MAX_LIST_LIMIT)
                        .await?;
                    for entry in &page.entries {
                        let Some((enc, id)) = layout.split_owned(kind, entry.path.as_str()) else {
                            continue;
                        };
                        if id_time_ms(id).is_none_or(|t| t > cutoff) {
                            continue;
                        }
                        if referenced.as_ref().is_none_or(|(e, _)| e != enc) {
                            referenced =
                                Some((enc.to_string(), self.referenced_ids(&layout, enc).await?));
                        }
                        let (_, ids) = referenced.as_ref().expect("set above");
                        if !ids.contains(id) {
                            match self.adapter.delete(&entry.path, None).await {
                                Ok(()) if kind == 'b' => report.bodies_deleted += 1,
                                Ok(()) => report.pages_deleted += 1,
                                Err(e) if e.code() == ErrorCode::NotFound => continue,
                                Err(e) => return Err(e),
                            }
                            report.bytes_deleted += entry.size;
                        }
                    }
                    match page.entries.last() {
                        Some(last) if page.more => after = Some(last.path.as_str().to_string()),
                        _ => break,
                    }
                }
            }
            let tenant = ns.tenant().as_str();
            for prefix in [
                layout.namespace_prefix(),
                crate::policy::policy_path(tenant)?.to_string(),
                KeyManager::tenant_path(tenant)?.to_string(),
                KeyManager::namespace_path(tenant, ns.name())?.to_string(),
            ] {
                let left = self.adapter.sweep_leftovers(&prefix, grace).await?;
                report.temp_files_deleted += left.files;
                report.bytes_deleted += left.bytes;
            }
            Ok(report)
        })
        .await
    }

    /// Body and page ids the head of `enc` references (empty when the key has no head).
    async fn referenced_ids(&self, layout: &Layout, enc: &str) -> Result<HashSet<String>> {
        let head_path = layout.head_of_enc(enc)?;
        let Some(head) = self.read_head(&head_path).await? else {
            return Ok(HashSet::new());
        };
        let mut ids: HashSet<String> = head.manifest.history_pages.iter().cloned().collect();
        let mut versions = head.manifest.versions()?;
        for page_id in &head.manifest.history_pages {
            let got = self.adapter.get(&layout.page(enc, page_id)?, None).await?;
            versions.extend(read_page_body(got).await?);
        }
        ids.extend(versions.into_iter().filter_map(|v| v.body_id));
        Ok(ids)
    }

    pub(super) async fn read_head(&self, path: &BlobPath) -> Result<Option<Head>> {
        let got = match self.adapter.get(path, None).await {
            Ok(got) => got,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if got.meta.size > MAX_HEAD_BYTES {
            return Err(Error::consistency(
                "head manifest is larger than any valid head",
            ));
        }
        let etag = got.meta.etag;
        let (manifest, inline) = manifest::decode(collect_bytes(got.body).await?)?;
        Ok(Some(Head {
            manifest,
            inline,
            etag,
        }))
    }

    pub(super) async fn read_page(
        &self,
        paths: &KeyPaths,
        page_id: &str,
    ) -> Result<Vec<StoredVersion>> {
        let got = self
            .adapter
            .get(&paths.page(page_id)?, None)
            .await
            .map_err(|e| {
                e.missing_means(
                    ErrorCode::Consistency,
                    "a history page of the key is missing",
                )
            })?;
        read_page_body(got).await
    }

    async fn find_version(
        &self,
        paths: &KeyPaths,
        manifest: &HeadManifest,
        id: &str,
    ) -> Result<Option<StoredVersion>> {
        if let Some(v) = manifest.find(id)? {
            return Ok(Some(v));
        }
        for page_id in &manifest.history_pages {
            if let Some(v) = self
                .read_page(paths, page_id)
                .await?
                .into_iter()
                .find(|v| v.version_id == id)
            {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Appends a version to the key's head with a compare-and-swap. `check` decides, for the head
    /// as last read, whether the write may go ahead.
    async fn commit(
        &self,
        paths: &KeyPaths,
        mut head: Option<Head>,
        append: Append<'_>,
        check: impl Fn(Option<&Head>) -> Result<()>,
    ) -> Result<bool> {
        let Append {
            version,
            keys,
            place,
            inline,
            retry,
            ready,
        } = append;
        // Every attempt, retries included, waits for `ready`: an adapter may report a lost
        // compare-and-swap before it awaited it.
        let ready = ready.map(|f| f.map(|r| r.map_err(|e| e.to_string())).boxed().shared());
        for _ in 0..MAX_CAS_ATTEMPTS {
            check(head.as_ref())?;
            let prior = head.as_ref().and_then(|h| h.manifest.current());
            // The current version stops being current: if its body lives only in the head, it
            // gets its body object now, durably, before the head that demotes it.
            if let (Some(prior), Some(inline)) =
                (prior, head.as_ref().and_then(|h| h.inline.as_ref()))
                && prior.body_deferred
                && let Some(body_id) = prior.body_id.as_deref()
            {
                self.adapter
                    .put(
                        &paths.body(body_id)?,
                        once_stream(inline.clone()),
                        PutMode::Overwrite,
                    )
                    .await?;
            }
            let mut linked = version.clone();
            sealing::link(keys, place, &mut linked, prior)?;
            let (next, spill) =
                HeadManifest::with_new(head.as_ref().map(|h| &h.manifest), &linked, || {
                    new_id(self.clock.as_ref())
                })?;
            let mut spilled = None;
            if let Some((page_id, page)) = spill {
                let page_path = paths.page(&page_id)?;
                self.adapter
                    .put(&page_path, once_stream(page), PutMode::Create)
                    .await?;
                spilled = Some(page_path);
            }
            let inline = inline
                .filter(|_| !version.tombstone && version.size <= self.settings.inline_threshold);
            let bytes = manifest::encode(&next, inline)?;
            let mode = match &head {
                Some(h) => PutMode::Update(h.etag.clone()),
                None => PutMode::Create,
            };
            let written = match ready.clone() {
                Some(ready) => {
                    let ready = ready
                        .map(|r| r.map_err(|m| Error::new(ErrorCode::PermanentAdapter, m)))
                        .boxed();
                    self.adapter
                        .put_after(&paths.head, once_stream(bytes), mode, ready)
                        .await
                }
                None => {
                    self.adapter
                        .put(&paths.head, once_stream(bytes), mode)
                        .await
                }
            };
            match written {
                Ok(_) => {
                    // Remembered, so a later read of an older head is caught.
                    sealing::check_fresh(self.keys.high_water(), place, None, Some(&linked))?;
                    return Ok(head.as_ref().and_then(|h| h.manifest.live()).is_some());
                }
                Err(e) if e.code() == ErrorCode::Conflict => {
                    if let Some(page) = spilled {
                        let _ = self.adapter.delete(&page, None).await;
                    }
                    if !retry {
                        return Err(Error::conflict(
                            "another writer changed the key concurrently",
                        ));
                    }
                    head = self.read_head(&paths.head).await?;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "gave up after repeated concurrent writes to the key",
        ))
    }

    pub(super) fn audit_event(
        &self,
        ctx: &StorageContext,
        operation: &'static str,
        ns: Option<&Namespace>,
        key: Option<&str>,
        version_id: Option<&str>,
    ) {
        self.audit.record(AuditEvent {
            namespace: ns.map(|ns| ns.name().to_string()),
            key: key.map(str::to_string),
            version_id: version_id.map(str::to_string),
            ..AuditEvent::for_request(self.clock.now_ms(), operation, ctx)
        });
    }

    /// Corrects quota usage after a write committed (the write stands either way): a failure is
    /// logged and leaves usage off by this charge, which a quota reset recounts.
    async fn settle_usage(&self, ctx: &StorageContext, ns: &str, charge: Charge) {
        if charge == Charge::default() {
            return;
        }
        let tenant = ctx.tenant().as_str();
        if let Err(e) = self.quotas.settle(tenant, ns, charge).await {
            tracing::warn!(
                code = e.code().as_str(),
                tenant,
                namespace = ns,
                "quota usage could not be corrected after a committed write"
            );
        }
    }

    /// Settles a charged write after its commit: a failed one gets its charge back; a committed
    /// one is counted by the head its CAS really replaced (a retry may have met a head other
    /// than the one first read, e.g. a racing delete or create).
    async fn settle_commit(
        &self,
        ctx: &StorageContext,
        ns: &str,
        charged: Charge,
        committed: &Result<bool>,
    ) {
        let correction = match committed {
            Err(_) => charged.negate(),
            Ok(was_live) => Charge {
                bytes: 0,
                objects: i64::from(!was_live) - charged.objects,
            },
        };
        self.settle_usage(ctx, ns, correction).await
    }

    /// Records a governance change (policy, quota): `detail` names what changed.
    pub(super) fn audit_change(
        &self,
        ctx: &StorageContext,
        operation: &'static str,
        namespace: &str,
        detail: String,
    ) {
        self.audit.record(AuditEvent {
            namespace: Some(namespace.to_string()),
            detail: Some(detail),
            ..AuditEvent::for_request(self.clock.now_ms(), operation, ctx)
        });
    }

    /// What `ns` uses now, counted from its heads and histories (for a new quota).
    pub(super) async fn usage_of(&self, ns: &Namespace) -> Result<QuotaUsage> {
        let mut usage = QuotaUsage::default();
        self.scan_histories(ns, |manifest, versions| {
            usage.bytes += body_bytes(versions);
            usage.objects += u64::from(manifest.live().is_some());
        })
        .await?;
        Ok(usage)
    }

    /// Calls `f` with each key's head and whole history (head and pages, newest first), key by
    /// key; purged keys are skipped.
    pub(super) async fn scan_histories(
        &self,
        ns: &Namespace,
        mut f: impl FnMut(&HeadManifest, &[StoredVersion]),
    ) -> Result<()> {
        let layout = Layout::new(ns);
        let prefix = layout.head_prefix("");
        let mut after: Option<String> = None;
        loop {
            let page = self
                .adapter
                .list(&prefix, after.as_deref(), MAX_LIST_LIMIT)
                .await?;
            let Some(last) = page.entries.last() else {
                return Ok(());
            };
            after = Some(last.path.as_str().to_string());
            for entry in &page.entries {
                let Some(head) = self.read_head(&entry.path).await? else {
                    continue;
                };
                if head.manifest.purged {
                    continue;
                }
                let key = layout.key_of_head(entry.path.as_str())?;
                let (_, paths) = KeyPaths::new_in(ns, &key)?;
                let mut versions = head.manifest.versions()?;
                for page_id in &head.manifest.history_pages {
                    versions.extend(self.read_page(&paths, page_id).await?);
                }
                f(&head.manifest, &versions);
            }
            if !page.more {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-thread hash is BLAKE3 of the whole input, at every size around the subtree split.
    #[tokio::test]
    async fn hashing_on_two_threads_is_blake3() {
        for len in [
            0usize,
            1,
            1024,
            1025,
            2048,
            3 * 1024 + 1,
            16 * 1024 + 1,
            300_000,
            1 << 20,
            (1 << 20) + 3,
            (2 << 20) - 1,
        ] {
            let plain = crate::conformance::pattern(len, len as u64);
            let want = checksum_string(&blake3::hash(&plain));
            assert_eq!(hash_on_two_threads(plain).await.unwrap(), want, "{len}");
        }
    }
}
