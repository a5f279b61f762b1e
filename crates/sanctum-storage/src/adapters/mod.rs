//! The blob adapter boundary: the [`BlobAdapter`] trait every backend implements, the types it
//! speaks, and the [`registry`] that admits adapters.
//!
//! **Boundary:** adapters store bytes under [`BlobPath`]s and know nothing of tenants, keys,
//! versions, policy or encryption; the facade builds every path and every manifest. A custom
//! backend plugs in by implementing [`BlobAdapter`] and passing the contract suite
//! (`sanctum_storage::conformance`, feature `conformance`).

pub mod cloud;
pub(crate) mod json;
pub mod local;
pub mod object_store;
pub mod record;
pub mod registry;

use std::fmt;
use std::ops::{AddAssign, Range};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use crate::error::{Error, ErrorCode, Result};

/// A stream of body bytes. An `Err` item ends the stream: the body is incomplete.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// Longest path segment an adapter must store (file systems allow 255 bytes per name).
pub const MAX_SEGMENT_LEN: usize = 200;

/// A validated adapter path: `/`-separated segments of `[a-z0-9._~-]`, none empty, none
/// starting with `.`. Lower-case only, so it is safe on case-insensitive file systems, and it can
/// never name a parent directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlobPath(String);

impl BlobPath {
    /// Validates a path.
    pub fn new(path: impl Into<String>) -> Result<Self> {
        let path = path.into();
        let ok = !path.is_empty()
            && path.split('/').all(|seg| {
                !seg.is_empty()
                    && seg.len() <= MAX_SEGMENT_LEN
                    && !seg.starts_with('.')
                    && seg.bytes().all(|b| {
                        b.is_ascii_lowercase()
                            || b.is_ascii_digit()
                            || matches!(b, b'.' | b'_' | b'~' | b'-')
                    })
            });
        if !ok {
            return Err(Error::invalid("invalid adapter path"));
        }
        Ok(Self(path))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BlobPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a put treats an existing object at the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Fail with `Conflict` if anything is there.
    Create,
    /// Replace only if the current etag equals this one; otherwise `Conflict`
    /// (also when nothing is there).
    Update(String),
}

/// What an adapter knows about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// Size in bytes.
    pub size: u64,
    /// An opaque tag that changes on every write of the path (compare-and-swap token).
    pub etag: String,
}

/// The result of a get: the object's metadata, the byte range returned and the bytes.
pub struct BlobGet {
    /// Metadata of the whole object.
    pub meta: BlobMeta,
    /// The range of the object that `body` holds.
    pub range: Range<u64>,
    /// The bytes, streamed.
    pub body: ByteStream,
}

impl fmt::Debug for BlobGet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobGet")
            .field("meta", &self.meta)
            .field("range", &self.range)
            .finish()
    }
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    /// The object's path.
    pub path: BlobPath,
    /// Its size in bytes.
    pub size: u64,
}

/// A page of a listing, in ascending byte order of paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The entries of this page.
    pub entries: Vec<ListEntry>,
    /// Whether more entries follow the last one.
    pub more: bool,
}

/// What an adapter can do. The registry checks these for consistency and the facade refuses to
/// run over an adapter that lacks what versioning needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobCapabilities {
    /// [`PutMode::Create`] is atomic.
    pub conditional_create: bool,
    /// [`PutMode::Update`] is atomic.
    pub conditional_update: bool,
    /// `delete` with an etag is atomic (otherwise it is checked, then done).
    pub atomic_conditional_delete: bool,
    /// Writes survive a crash of the machine once `put` returns.
    pub durable: bool,
    /// Data outlives the process.
    pub persistent: bool,
    /// A ranged read costs no more than a whole one (no request fee, no round trip), so the
    /// facade reads large bodies in parallel runs of chunks.
    pub parallel_ranged_reads: bool,
    /// [`BlobAdapter::get_blocking`] answers, so the facade reads and decrypts a run of chunks
    /// on one blocking thread, with no hand-off in between.
    pub blocking_reads: bool,
}

/// What [`BlobAdapter::sweep_leftovers`] removed: files that interrupted writes left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LeftoverReport {
    /// Files removed.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

impl AddAssign for LeftoverReport {
    fn add_assign(&mut self, other: Self) {
        self.files += other.files;
        self.bytes += other.bytes;
    }
}

/// A blob backend. Object-safe; the facade holds it as `Arc<dyn BlobAdapter>`.
///
/// Contract (checked by the conformance suite):
/// - `put` is atomic: a reader sees the old object or the new one, never part of one; a put
///   whose body stream fails or whose future is dropped before the body ends stores nothing.
/// - `get`, `head` and `delete` of a missing path fail with `NotFound`.
/// - `list` returns paths starting with a string prefix in ascending byte order.
///
/// Cancel safety: dropping a `put` future before its body stream ended leaves the path as it
/// was. Dropping it after that may or may not commit the write.
#[async_trait]
pub trait BlobAdapter: Send + Sync + fmt::Debug + 'static {
    /// The backend kind, e.g. `"local"` (a span attribute).
    fn kind(&self) -> &'static str;
    /// This instance's name (a span attribute).
    fn name(&self) -> &str;
    /// What the adapter can do.
    fn capabilities(&self) -> BlobCapabilities;

    /// Prepares the backend (creates folders, checks buckets). Idempotent.
    async fn init(&self) -> Result<()>;
    /// Checks that the backend answers.
    async fn health_check(&self) -> Result<()>;
    /// Releases resources. The adapter is not used afterwards.
    async fn dispose(&self) -> Result<()>;

    /// Stores `body` at `path` under `mode`; returns the new object's metadata.
    async fn put(&self, path: &BlobPath, body: ByteStream, mode: PutMode) -> Result<BlobMeta>;
    /// Like `put`, but the write becomes visible only after `ready` resolves `Ok` (and not at all
    /// if it fails, returning its error). Adapters may prepare the write meanwhile: the facade
    /// uses this to overlap writing a head manifest with making its body durable.
    async fn put_after(
        &self,
        path: &BlobPath,
        body: ByteStream,
        mode: PutMode,
        ready: BoxFuture<'static, Result<()>>,
    ) -> Result<BlobMeta> {
        ready.await?;
        self.put(path, body, mode).await
    }
    /// Reads `path`, or only `range` of it (which must lie within the object).
    async fn get(&self, path: &BlobPath, range: Option<Range<u64>>) -> Result<BlobGet>;
    /// Reads bytes `range` of `path` whole, on the calling thread, which must be one that may
    /// block (a `spawn_blocking` worker). Adapters that declare
    /// [`BlobCapabilities::blocking_reads`] implement it; the default answers `NotSupported`,
    /// and callers then use [`get`](BlobAdapter::get).
    fn get_blocking(&self, path: &BlobPath, range: Range<u64>) -> Result<(BlobMeta, Bytes)> {
        let _ = (path, range);
        Err(Error::new(
            ErrorCode::NotSupported,
            format!("the {} adapter has no blocking reads", self.kind()),
        ))
    }
    /// Reads the metadata of `path`.
    async fn head(&self, path: &BlobPath) -> Result<BlobMeta>;
    /// Deletes `path`; with `if_match`, only while its etag is that one (else `Conflict`).
    async fn delete(&self, path: &BlobPath, if_match: Option<&str>) -> Result<()>;
    /// Lists up to `limit` paths that start with `prefix` and sort after `start_after`.
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize)
    -> Result<ListPage>;
    /// Removes what writes that never finished (a killed process, a full disk) left behind for
    /// paths that may start with `prefix`, once it is older than `older_than`: staging files
    /// that are not objects and that `list` never shows. An adapter may remove a little more
    /// than the prefix strictly names (leftovers do not say which path they were for) and its
    /// own leftovers outside any path. The default removes nothing: an object store shows no
    /// partial object (a multipart upload of a killed process stays invisible until the
    /// bucket's lifecycle rule for incomplete uploads removes it).
    ///
    /// With a short `older_than` this can break writes still in progress: like the facade's
    /// sweeper, it needs a grace period longer than the slowest put.
    async fn sweep_leftovers(&self, prefix: &str, older_than: Duration) -> Result<LeftoverReport> {
        let _ = (prefix, older_than);
        Ok(LeftoverReport::default())
    }
}

/// Checks that `range` lies within an object of `size` bytes.
pub(crate) fn check_range(range: &Range<u64>, size: u64) -> Result<()> {
    if range.start > range.end || range.end > size {
        return Err(Error::invalid(format!(
            "range {}..{} outside object of {size} bytes",
            range.start, range.end
        )));
    }
    Ok(())
}

/// Collects a byte stream into one buffer (for small objects such as manifests).
pub async fn collect_bytes(mut body: ByteStream) -> Result<Bytes> {
    use futures::StreamExt;
    let mut first: Option<Bytes> = None;
    let mut rest: Vec<u8> = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        match &first {
            None => first = Some(chunk),
            Some(f) => {
                if rest.is_empty() {
                    rest.extend_from_slice(f);
                }
                rest.extend_from_slice(&chunk);
            }
        }
    }
    Ok(if rest.is_empty() {
        first.unwrap_or_default()
    } else {
        Bytes::from(rest)
    })
}

/// A byte stream of one buffer.
pub fn once_stream(bytes: Bytes) -> ByteStream {
    Box::pin(futures::stream::once(async move { Ok(bytes) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_reject_tricks() {
        for bad in [
            "", "/a", "a/", "a//b", "../a", "a/..", ".hidden", "A", "a\\b", "a b", "a/./b",
        ] {
            assert!(BlobPath::new(bad).is_err(), "{bad:?}");
        }
        assert!(BlobPath::new("t/acme/n/ns/h/6162.k").is_ok());
        assert!(BlobPath::new("x".repeat(201)).is_err());
    }
}
