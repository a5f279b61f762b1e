//! [`CountingAdapter`]: forwards every call to an inner adapter and counts them, so tests and
//! benchmarks can state how many backend calls an operation makes.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;

use crate::adapters::{
    BlobAdapter, BlobCapabilities, BlobGet, BlobMeta, BlobPath, ByteStream, ListPage, PutMode,
};
use crate::error::Result;

/// Calls made through a [`CountingAdapter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// `put` calls.
    pub puts: u64,
    /// `get` calls.
    pub gets: u64,
    /// `head` calls.
    pub heads: u64,
    /// `delete` calls.
    pub deletes: u64,
    /// `list` calls.
    pub lists: u64,
}

impl CallCounts {
    /// Every data call (lifecycle calls excluded).
    pub fn total(&self) -> u64 {
        self.puts + self.gets + self.heads + self.deletes + self.lists
    }
}

/// An adapter wrapper that counts calls.
#[derive(Debug)]
pub struct CountingAdapter {
    inner: Arc<dyn BlobAdapter>,
    counts: [AtomicU64; 5],
}

impl CountingAdapter {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobAdapter>) -> Self {
        Self {
            inner,
            counts: Default::default(),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> CallCounts {
        let c = |i: usize| self.counts[i].load(Ordering::Relaxed);
        CallCounts {
            puts: c(0),
            gets: c(1),
            heads: c(2),
            deletes: c(3),
            lists: c(4),
        }
    }

    /// Sets every count back to zero.
    pub fn reset(&self) {
        self.counts
            .iter()
            .for_each(|c| c.store(0, Ordering::Relaxed));
    }

    fn bump(&self, i: usize) {
        self.counts[i].fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl BlobAdapter for CountingAdapter {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> BlobCapabilities {
        self.inner.capabilities()
    }
    async fn init(&self) -> Result<()> {
        self.inner.init().await
    }
    async fn health_check(&self) -> Result<()> {
        self.inner.health_check().await
    }
    async fn dispose(&self) -> Result<()> {
        self.inner.dispose().await
    }
    async fn put(&self, path: &BlobPath, body: ByteStream, mode: PutMode) -> Result<BlobMeta> {
        self.bump(0);
        self.inner.put(path, body, mode).await
    }
    async fn put_after(
        &self,
        path: &BlobPath,
        body: ByteStream,
        mode: PutMode,
        ready: BoxFuture<'static, Result<()>>,
    ) -> Result<BlobMeta> {
        self.bump(0);
        self.inner.put_after(path, body, mode, ready).await
    }
    async fn get(&self, path: &BlobPath, range: Option<Range<u64>>) -> Result<BlobGet> {
        self.bump(1);
        self.inner.get(path, range).await
    }
    fn get_blocking(&self, path: &BlobPath, range: Range<u64>) -> Result<(BlobMeta, Bytes)> {
        self.bump(1);
        self.inner.get_blocking(path, range)
    }
    async fn head(&self, path: &BlobPath) -> Result<BlobMeta> {
        self.bump(2);
        self.inner.head(path).await
    }
    async fn delete(&self, path: &BlobPath, if_match: Option<&str>) -> Result<()> {
        self.bump(3);
        self.inner.delete(path, if_match).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        self.bump(4);
        self.inner.list(prefix, start_after, limit).await
    }
    async fn sweep_leftovers(
        &self,
        prefix: &str,
        older_than: std::time::Duration,
    ) -> Result<crate::adapters::LeftoverReport> {
        self.inner.sweep_leftovers(prefix, older_than).await
    }
}
