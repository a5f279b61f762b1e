//! A blob adapter over any [`::object_store::ObjectStore`]; [`ObjectStoreAdapter::in_memory`] is
//! the in-memory adapter, and the cloud backends reuse the same code.
//!
//! Bodies up to [`PART_SIZE`] go up in one put; larger unconditional bodies stream as a multipart
//! upload (aborted on failure; never completed if the writer is dropped, so nothing appears).
//! object_store has no conditional delete, so `delete` with an etag checks, then deletes:
//! [`BlobCapabilities::atomic_conditional_delete`] is `false`.

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

use super::{
    BlobAdapter, BlobCapabilities, BlobGet, BlobMeta, BlobPath, ByteStream, ListEntry, ListPage,
    PutMode, check_range,
};
use crate::error::{Error, ErrorCode, Result};

/// Bodies larger than this stream as multipart uploads, in parts of this size.
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// Blob adapter over an `object_store` store.
#[derive(Debug, Clone)]
pub struct ObjectStoreAdapter {
    kind: &'static str,
    name: String,
    store: Arc<dyn ObjectStore>,
    capabilities: BlobCapabilities,
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
        }
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
            },
        )
    }

    /// The wrapped store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

/// Maps object_store errors onto the project's codes.
pub(crate) fn map_err(err: ::object_store::Error) -> Error {
    use ::object_store::Error as E;
    let (code, msg) = match &err {
        E::NotFound { .. } => (ErrorCode::NotFound, "no such object"),
        E::AlreadyExists { .. } => (ErrorCode::Conflict, "object already exists"),
        E::Precondition { .. } => (ErrorCode::Conflict, "object changed since it was read"),
        E::NotModified { .. } => (ErrorCode::Conflict, "object not modified"),
        E::NotSupported { .. } | E::NotImplemented { .. } => (
            ErrorCode::NotSupported,
            "operation not supported by the backend",
        ),
        E::InvalidPath { .. } => (ErrorCode::InvalidInput, "invalid backend path"),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => (
            ErrorCode::PermanentAdapter,
            "backend refused the credentials",
        ),
        E::UnknownConfigurationKey { .. } => {
            (ErrorCode::Config, "unknown backend configuration key")
        }
        _ => (ErrorCode::TransientAdapter, "backend request failed"),
    };
    Error::new(code, msg).with_source(err)
}

fn os_path(path: &BlobPath) -> Path {
    Path::from(path.as_str())
}

fn meta_of(meta: &::object_store::ObjectMeta) -> BlobMeta {
    BlobMeta {
        size: meta.size,
        etag: meta.e_tag.clone().unwrap_or_default(),
    }
}

impl ObjectStoreAdapter {
    async fn put_multipart(
        &self,
        path: &Path,
        first: PutPayloadMut,
        mut body: ByteStream,
    ) -> Result<BlobMeta> {
        let mut upload = self.store.put_multipart(path).await.map_err(map_err)?;
        let result: Result<()> = async {
            let mut part = first;
            loop {
                let next = body.next().await.transpose()?;
                if let Some(chunk) = &next {
                    part.push(chunk.clone());
                }
                if part.content_length() >= PART_SIZE
                    || (next.is_none() && part.content_length() > 0)
                {
                    let payload = std::mem::take(&mut part).freeze();
                    upload.put_part(payload).await.map_err(map_err)?;
                }
                if next.is_none() {
                    return Ok(());
                }
            }
        }
        .await;
        if let Err(e) = result {
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.complete().await.map_err(map_err)?;
        self.head_path(path).await
    }

    async fn head_path(&self, path: &Path) -> Result<BlobMeta> {
        self.store
            .head(path)
            .await
            .map(|m| meta_of(&m))
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
        Ok(())
    }

    async fn health_check(&self) -> Result<()> {
        let mut listing = self.store.list(Some(&Path::from("health")));
        listing.next().await.transpose().map_err(map_err)?;
        Ok(())
    }

    async fn dispose(&self) -> Result<()> {
        Ok(())
    }

    async fn put(&self, path: &BlobPath, mut body: ByteStream, mode: PutMode) -> Result<BlobMeta> {
        let location = os_path(path);
        let mut payload = PutPayloadMut::new();
        while let Some(chunk) = body.next().await {
            payload.push(chunk?);
            // Conditional puts stay single requests: object_store multipart is never conditional.
            if mode == PutMode::Overwrite && payload.content_length() >= PART_SIZE {
                return self.put_multipart(&location, payload, body).await;
            }
        }
        let size = payload.content_length() as u64;
        let payload: PutPayload = payload.freeze();
        let mode = match mode {
            PutMode::Overwrite => OsPutMode::Overwrite,
            PutMode::Create => OsPutMode::Create,
            PutMode::Update(etag) => OsPutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
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
            etag: result.e_tag.unwrap_or_default(),
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
                if let (Some(r), ErrorCode::TransientAdapter) = (&range, err.code())
                    && let Ok(meta) = self.head_path(&location).await
                {
                    check_range(r, meta.size)?;
                }
                return Err(err);
            }
        };
        let meta = meta_of(&result.meta);
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
