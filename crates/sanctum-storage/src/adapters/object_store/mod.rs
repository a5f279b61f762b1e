//! A blob adapter over any [`::object_store::ObjectStore`]: [`ObjectStoreAdapter::in_memory`]
//! is the in-memory adapter, and the S3, GCS and Azure adapters ([`super::cloud`]) are the same
//! code over object_store's HTTP stores.
//!
//! Bodies up to the part size go up in one put; larger unconditional bodies stream as a
//! multipart upload (`multipart.rs`: equal parts, a bounded number in flight, aborted on failure
//! or drop, so nothing appears). Conditional puts are single requests, because object_store's
//! multipart uploads are never conditional; only head manifests and key records, which are
//! small, are written conditionally. object_store has no conditional delete, so `delete` with an
//! etag checks, then deletes: [`BlobCapabilities::atomic_conditional_delete`] is `false`.

mod errors;
mod multipart;

use std::ops::Range;
use std::sync::Arc;

use ::object_store::memory::InMemory;
use ::object_store::path::Path;
use ::object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode as OsPutMode, PutOptions,
    PutPayload, PutPayloadMut, UpdateVersion,
};
use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};

pub(crate) use errors::map_err;

use super::{
    BlobAdapter, BlobCapabilities, BlobGet, BlobMeta, BlobPath, ByteStream, ListEntry, ListPage,
    PutMode, check_range,
};
use crate::error::{Error, ErrorCode, Result};

/// Default multipart part size: 512 sealed chunks (about 8 MiB). A multiple of
/// [`sanctum_crypto::ENCRYPTED_CHUNK_SIZE`], so no sealed chunk straddles two parts, and above
/// S3's 5 MiB minimum.
pub const PART_SIZE: usize = 512 * sanctum_crypto::ENCRYPTED_CHUNK_SIZE;

/// Default number of parts of one upload in flight at once.
pub const PART_CONCURRENCY: usize = 4;

/// Blob adapter over an `object_store` store.
#[derive(Debug, Clone)]
pub struct ObjectStoreAdapter {
    kind: &'static str,
    name: String,
    store: Arc<dyn ObjectStore>,
    capabilities: BlobCapabilities,
    part_size: usize,
    part_concurrency: usize,
    version_tokens: bool,
    check_conditional_writes: bool,
}

impl ObjectStoreAdapter {
    /// Wraps `store`, declaring `capabilities` for it.
    pub fn new(
        kind: &'static str,
        name: impl Into<String>,
        store: Arc<dyn ObjectStore>,
        capabilities: BlobCapabilities,
    ) -> Self {
        Self {
            kind,
            name: name.into(),
            store,
            capabilities,
            part_size: PART_SIZE,
            part_concurrency: PART_CONCURRENCY,
            version_tokens: false,
            check_conditional_writes: false,
        }
    }

    /// Sets the multipart part size (rounded down to whole sealed chunks, at least 5 MiB) and
    /// how many parts of one upload are in flight at once (at least 1).
    pub fn with_multipart(mut self, part_size: usize, concurrency: usize) -> Self {
        let chunk = sanctum_crypto::ENCRYPTED_CHUNK_SIZE;
        let min = (5 * 1024 * 1024usize).div_ceil(chunk) * chunk;
        self.part_size = (part_size / chunk * chunk).max(min);
        self.part_concurrency = concurrency.max(1);
        self
    }

    /// Makes compare-and-swap tokens carry the object version as well as its etag: stores whose
    /// conditional update needs the version (GCS generations) set this.
    pub fn with_version_tokens(mut self) -> Self {
        self.version_tokens = true;
        self
    }

    /// Makes `init` prove that the store honours conditional writes: it creates a probe object
    /// twice with `PutMode::Create` and refuses the store (`Config`) if the second create
    /// succeeds. Some S3-compatible servers ignore `If-None-Match`, which would silently turn
    /// every compare-and-swap into a blind overwrite and lose concurrent updates.
    pub fn with_conditional_write_check(mut self) -> Self {
        self.check_conditional_writes = true;
        self
    }

    /// The in-memory adapter (object_store's `InMemory`, which has full compare-and-swap).
    pub fn in_memory(name: impl Into<String>) -> Self {
        Self::new(
            "memory",
            name,
            Arc::new(InMemory::new()),
            BlobCapabilities {
                conditional_create: true,
                conditional_update: true,
                atomic_conditional_delete: false,
                durable: false,
                persistent: false,
                parallel_ranged_reads: true,
                blocking_reads: false,
            },
        )
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The multipart part size in bytes.
    pub fn part_size(&self) -> usize {
        self.part_size
    }
}

fn os_path(path: &BlobPath) -> Path {
    Path::from(path.as_str())
}

/// Separates etag and version in a version token (neither contains a space).
const TOKEN_SEPARATOR: char = ' ';

impl ObjectStoreAdapter {
    fn token(&self, e_tag: Option<String>, version: Option<String>) -> String {
        let e_tag = e_tag.unwrap_or_default();
        match version {
            Some(version) if self.version_tokens => format!("{e_tag}{TOKEN_SEPARATOR}{version}"),
            _ => e_tag,
        }
    }

    fn update_version(&self, token: String) -> UpdateVersion {
        match token.split_once(TOKEN_SEPARATOR) {
            Some((e_tag, version)) if self.version_tokens => UpdateVersion {
                e_tag: Some(e_tag.to_string()),
                version: Some(version.to_string()),
            },
            _ => UpdateVersion {
                e_tag: Some(token),
                version: None,
            },
        }
    }

    fn meta_of(&self, meta: &::object_store::ObjectMeta) -> BlobMeta {
        BlobMeta {
            size: meta.size,
            etag: self.token(meta.e_tag.clone(), meta.version.clone()),
        }
    }

    async fn head_path(&self, path: &Path) -> Result<BlobMeta> {
        self.store
            .head(path)
            .await
            .map(|m| self.meta_of(&m))
            .map_err(map_err)
    }
}

#[async_trait]
impl BlobAdapter for ObjectStoreAdapter {
    fn kind(&self) -> &'static str {
        self.kind
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> BlobCapabilities {
        self.capabilities
    }

    async fn init(&self) -> Result<()> {
        if !self.check_conditional_writes {
            return Ok(());
        }
        let probe = Path::from(format!(
            "health/cas-probe-{}",
            crate::observability::clock::fresh_ulid()
                .to_string()
                .to_ascii_lowercase()
        ));
        let create = || PutOptions::from(OsPutMode::Create);
        let payload = || PutPayload::from_static(b"probe");
        self.store
            .put_opts(&probe, payload(), create())
            .await
            .map_err(map_err)?;
        let again = self.store.put_opts(&probe, payload(), create()).await;
        let _ = self.store.delete(&probe).await;
        match again {
            Err(
                ::object_store::Error::AlreadyExists { .. }
                | ::object_store::Error::Precondition { .. },
            ) => Ok(()),
            Ok(_) => Err(Error::config(format!(
                "{} adapter '{}': the store ignores conditional writes (a second create of the \
                 same object succeeded), so versioning could lose updates; use a store that \
                 honours If-None-Match and If-Match",
                self.kind, self.name
            ))),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn health_check(&self) -> Result<()> {
        let mut listing = self.store.list(Some(&Path::from("health")));
        match listing.next().await.transpose() {
            Ok(_) => Ok(()),
            Err(e) => {
                let err = map_err(e);
                Err(match err.code() {
                    // Listing a missing key is empty, so a 404 means the bucket itself is missing.
                    ErrorCode::NotFound => Error::config(format!(
                        "{} adapter '{}': the bucket or container does not exist",
                        self.kind, self.name
                    ))
                    .with_source(err),
                    _ => err,
                })
            }
        }
    }

    async fn dispose(&self) -> Result<()> {
        Ok(())
    }

    async fn put(&self, path: &BlobPath, mut body: ByteStream, mode: PutMode) -> Result<BlobMeta> {
        let location = os_path(path);
        let mut payload = PutPayloadMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            // Conditional puts stay single requests: object_store multipart is never conditional.
            if mode == PutMode::Overwrite && payload.content_length() + chunk.len() > self.part_size
            {
                let (done, size) = multipart::upload(
                    &self.store,
                    &location,
                    payload,
                    chunk,
                    body,
                    self.part_size,
                    self.part_concurrency,
                )
                .await?;
                return Ok(BlobMeta {
                    size,
                    etag: self.token(done.e_tag, done.version),
                });
            }
            payload.push(chunk);
        }
        let size = payload.content_length() as u64;
        let payload: PutPayload = payload.freeze();
        let mode = match mode {
            PutMode::Overwrite => OsPutMode::Overwrite,
            PutMode::Create => OsPutMode::Create,
            PutMode::Update(token) => OsPutMode::Update(self.update_version(token)),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let result = self
            .store
            .put_opts(&location, payload, opts)
            .await
            .map_err(|e| {
                // S3 answers 404 to If-Match on a missing key: that is a lost race, not a missing key.
                let e = map_err(e);
                if e.code() == ErrorCode::NotFound {
                    Error::conflict("object changed since it was read")
                } else {
                    e
                }
            })?;
        Ok(BlobMeta {
            size,
            etag: self.token(result.e_tag, result.version),
        })
    }

    async fn get(&self, path: &BlobPath, range: Option<Range<u64>>) -> Result<BlobGet> {
        let location = os_path(path);
        if let Some(r) = &range
            && r.is_empty()
        {
            // object_store rejects empty ranges; answer them from the metadata.
            let meta = self.head_path(&location).await?;
            check_range(r, meta.size)?;
            return Ok(BlobGet {
                meta,
                range: r.clone(),
                body: Box::pin(futures::stream::empty()),
            });
        }
        let opts = GetOptions {
            range: range.clone().map(GetRange::Bounded),
            ..Default::default()
        };
        let result = match self.store.get_opts(&location, opts).await {
            Ok(result) => result,
            Err(e) => {
                let err = map_err(e);
                // object_store reports a range past the end as a generic error: tell it apart
                // from a backend failure by checking the range against the object's size.
                if let Some(r) = &range
                    && err.code() != ErrorCode::NotFound
                    && let Ok(meta) = self.head_path(&location).await
                {
                    check_range(r, meta.size)?;
                }
                return Err(err);
            }
        };
        let meta = self.meta_of(&result.meta);
        if let Some(r) = &range {
            check_range(r, meta.size)?;
        }
        let returned = result.range.clone();
        let body = result.into_stream().map_err(map_err).boxed();
        Ok(BlobGet {
            meta,
            range: returned,
            body,
        })
    }

    async fn head(&self, path: &BlobPath) -> Result<BlobMeta> {
        self.head_path(&os_path(path)).await
    }

    async fn delete(&self, path: &BlobPath, if_match: Option<&str>) -> Result<()> {
        let location = os_path(path);
        let current = self.head_path(&location).await?;
        if let Some(etag) = if_match
            && current.etag != etag
        {
            return Err(Error::conflict("object changed since it was read"));
        }
        self.store.delete(&location).await.map_err(map_err)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        // object_store lists by whole segments: list the prefix's folder, filter by string prefix.
        let folder = prefix.rsplit_once('/').map(|(dir, _)| Path::from(dir));
        let listing = match start_after {
            Some(after) => self
                .store
                .list_with_offset(folder.as_ref(), &Path::from(after)),
            None => self.store.list(folder.as_ref()),
        };
        let mut out = Vec::new();
        let mut listing = listing.map_err(map_err);
        while let Some(meta) = listing.try_next().await? {
            let location = meta.location.as_ref();
            if !location.starts_with(prefix) && location > prefix {
                // Listings come in ascending order: nothing after this can match.
                break;
            }
            if !location.starts_with(prefix) || start_after.is_some_and(|sa| location <= sa) {
                continue;
            }
            let Ok(path) = BlobPath::new(location) else {
                continue;
            };
            out.push(ListEntry {
                path,
                size: meta.size,
            });
            if out.len() > limit {
                break;
            }
        }
        let more = out.len() > limit;
        out.truncate(limit);
        Ok(ListPage { entries: out, more })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_tokens_carry_the_generation_only_when_asked() {
        let plain = ObjectStoreAdapter::in_memory("t");
        let gcs = ObjectStoreAdapter::in_memory("t").with_version_tokens();
        let (etag, generation) = (Some("CKih16GjycICEAE=".to_string()), Some("17".to_string()));
        assert_eq!(
            plain.token(etag.clone(), generation.clone()),
            "CKih16GjycICEAE="
        );
        let token = gcs.token(etag.clone(), generation.clone());
        assert_eq!(token, "CKih16GjycICEAE= 17");
        // An update sends both back, so a GCS generation precondition can be built.
        let update = gcs.update_version(token);
        assert_eq!((update.e_tag, update.version), (etag.clone(), generation));
        // Stores that return no version keep plain etag tokens.
        assert_eq!(gcs.token(etag.clone(), None), "CKih16GjycICEAE=");
        let update = gcs.update_version("\"abc\"".to_string());
        assert_eq!(
            (update.e_tag.as_deref(), update.version),
            (Some("\"abc\""), None)
        );
        let update = plain.update_version("a b".to_string());
        assert_eq!(
            (update.e_tag.as_deref(), update.version),
            (Some("a b"), None)
        );
    }

    #[test]
    fn part_sizes_are_whole_chunks_and_at_least_five_mib() {
        let chunk = sanctum_crypto::ENCRYPTED_CHUNK_SIZE;
        let a = ObjectStoreAdapter::in_memory("t").with_multipart(8 * 1024 * 1024 + 5, 0);
        assert_eq!(a.part_size() % chunk, 0);
        assert!(a.part_size() <= 8 * 1024 * 1024 + 5);
        assert_eq!(a.part_concurrency, 1);
        let small = ObjectStoreAdapter::in_memory("t").with_multipart(1024, 4);
        assert_eq!(small.part_size() % chunk, 0);
        assert!(small.part_size() >= 5 * 1024 * 1024);
        assert!(small.part_size() < 5 * 1024 * 1024 + chunk);
        assert_eq!(PART_SIZE % chunk, 0);
    }
}
