//! [`RecordingAdapter`]: forwards every call to an inner adapter and keeps a copy of every path
//! and every byte written, and every read's path and range, so tests can prove what an adapter
//! was (and was not) given and asked for.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;

use crate::adapters::{
    BlobAdapter, BlobCapabilities, BlobGet, BlobMeta, BlobPath, ByteStream, ListPage, PutMode,
};
use crate::error::Result;

/// One recorded write.
#[derive(Debug, Clone)]
pub struct RecordedPut {
    /// Where it went.
    pub path: String,
    /// Every byte the adapter was handed.
    pub bytes: Vec<u8>,
}

/// An adapter wrapper that records writes.
#[derive(Debug)]
pub struct RecordingAdapter {
    inner: Arc<dyn BlobAdapter>,
    puts: Arc<Mutex<Vec<RecordedPut>>>,
    gets: Mutex<Vec<RecordedGet>>,
}

/// One recorded read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedGet {
    /// What was read.
    pub path: String,
    /// The byte range asked for (`None`: the whole object).
    pub range: Option<Range<u64>>,
}

impl RecordingAdapter {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobAdapter>) -> Self {
        Self {
            inner,
            puts: Arc::default(),
            gets: Mutex::default(),
        }
    }

    /// Every read so far.
    pub fn gets(&self) -> Vec<RecordedGet> {
        self.gets.lock().expect("recording poisoned").clone()
    }

    /// Every write so far.
    pub fn puts(&self) -> Vec<RecordedPut> {
        self.puts.lock().expect("recording poisoned").clone()
    }

    /// Whether any recorded path or written byte contains `needle`.
    pub fn saw(&self, needle: &[u8]) -> bool {
        self.puts
            .lock()
            .expect("recording poisoned")
            .iter()
            .any(|p| contains(&p.bytes, needle) || contains(p.path.as_bytes(), needle))
    }

    fn tee(&self, path: &BlobPath, body: ByteStream) -> ByteStream {
        let puts = self.puts.clone();
        let path = path.as_str().to_string();
        let copy = Arc::new(Mutex::new(Vec::new()));
        let seen = copy.clone();
        let body = body.map(move |item| {
            if let Ok(chunk) = &item {
                seen.lock()
                    .expect("recording poisoned")
                    .extend_from_slice(chunk);
            }
            item
        });
        // Record when the stream is dropped (after the adapter consumed it).
        Box::pin(Recorded {
            inner: Box::pin(body),
            on_drop: Some(Box::new(move || {
                let bytes = std::mem::take(&mut *copy.lock().expect("recording poisoned"));
                puts.lock()
                    .expect("recording poisoned")
                    .push(RecordedPut { path, bytes });
            })),
        })
    }
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

type OnDrop = Box<dyn FnOnce() + Send>;

struct Recorded {
    inner: ByteStream,
    on_drop: Option<OnDrop>,
}

impl futures::Stream for Recorded {
    type Item = Result<Bytes>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if let Some(f) = self.on_drop.take() {
            f();
        }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl BlobAdapter for RecordingAdapter {
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
        let body = self.tee(path, body);
        self.inner.put(path, body, mode).await
    }
    async fn put_after(
        &self,
        path: &BlobPath,
        body: ByteStream,
        mode: PutMode,
        ready: BoxFuture<'static, Result<()>>,
    ) -> Result<BlobMeta> {
        let body = self.tee(path, body);
        self.inner.put_after(path, body, mode, ready).await
    }
    async fn get(&self, path: &BlobPath, range: Option<Range<u64>>) -> Result<BlobGet> {
        self.gets
            .lock()
            .expect("recording poisoned")
            .push(RecordedGet {
                path: path.as_str().to_string(),
                range: range.clone(),
            });
        self.inner.get(path, range).await
    }
    fn get_blocking(&self, path: &BlobPath, range: Range<u64>) -> Result<(BlobMeta, Bytes)> {
        self.gets
            .lock()
            .expect("recording poisoned")
            .push(RecordedGet {
                path: path.as_str().to_string(),
                range: Some(range.clone()),
            });
        self.inner.get_blocking(path, range)
    }
    async fn head(&self, path: &BlobPath) -> Result<BlobMeta> {
        self.inner.head(path).await
    }
    async fn delete(&self, path: &BlobPath, if_match: Option<&str>) -> Result<()> {
        self.inner.delete(path, if_match).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
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
