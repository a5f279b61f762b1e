//! Stream wrappers on the data path: [`Tap`] hashes and measures a body on its way to the adapter;
//! [`Verify`] checks a full read against its checksum and fails the stream on a mismatch.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use tokio::sync::oneshot;

use crate::adapters::ByteStream;
use crate::error::{Error, Result};

/// Formats a BLAKE3 hash as the stored checksum string.
pub(crate) fn checksum_string(hash: &blake3::Hash) -> String {
    format!("blake3:{}", hash.to_hex())
}

/// What a [`Tap`] learned about the body that passed through it.
#[derive(Debug)]
pub(crate) struct Tapped {
    pub checksum: String,
    pub size: u64,
    /// The whole body, when it was no larger than the inline threshold.
    pub inline: Option<Bytes>,
}

#[derive(Debug)]
struct TapState {
    hasher: Option<blake3::Hasher>,
    size: u64,
    inline: Option<Vec<Bytes>>,
    inline_limit: u64,
}

/// Shared handle to a tap's results; read after the adapter consumed the stream.
#[derive(Debug, Clone)]
pub(crate) struct Tap(Arc<Mutex<TapState>>);

impl Tap {
    /// A tap that keeps the whole stream while it is at most `inline_limit` bytes, and hashes
    /// it when `hash` is set.
    pub(crate) fn new(inline_limit: u64, hash: bool) -> Self {
        Self(Arc::new(Mutex::new(TapState {
            hasher: hash.then(blake3::Hasher::new),
            size: 0,
            inline: Some(Vec::new()),
            inline_limit,
        })))
    }

    /// Wraps `inner`: every chunk is hashed, counted and (while small) kept for inlining. The
    /// receiver resolves when the stream has ended cleanly (and errs if it is dropped before).
    pub(crate) fn wrap(&self, inner: ByteStream) -> (ByteStream, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let stream = TapStream {
            inner,
            state: self.clone(),
            ended: Some(tx),
        };
        (Box::pin(stream), rx)
    }

    pub(crate) fn finish(&self) -> Tapped {
        let mut s = self.0.lock().expect("tap lock poisoned");
        let inline = s.inline.take().map(|parts| match parts.len() {
            0 => Bytes::new(),
            1 => parts.into_iter().next().expect("one part"),
            _ => Bytes::from(parts.concat()),
        });
        Tapped {
            checksum: s
                .hasher
                .as_ref()
                .map(|h| checksum_string(&h.finalize()))
                .unwrap_or_default(),
            size: s.size,
            inline,
        }
    }
}

struct TapStream {
    inner: ByteStream,
    state: Tap,
    ended: Option<oneshot::Sender<()>>,
}

impl Stream for TapStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = &item
            && let Some(ended) = self.ended.take()
        {
            let _ = ended.send(());
        }
        if let Poll::Ready(Some(Ok(chunk))) = &item {
            let mut s = self.state.0.lock().expect("tap lock poisoned");
            if let Some(h) = &mut s.hasher {
                h.update(chunk);
            }
            s.size += chunk.len() as u64;
            if s.size > s.inline_limit {
                s.inline = None;
            } else if let Some(parts) = &mut s.inline {
                parts.push(chunk.clone());
            }
        }
        item
    }
}

/// Verifies a full read against `expected`; a mismatch ends the stream with a `Consistency` error.
pub(crate) struct Verify {
    inner: BoxStream<'static, Result<Bytes>>,
    hasher: Option<blake3::Hasher>,
    expected: String,
}

impl Verify {
    pub(crate) fn wrap(inner: ByteStream, expected: String) -> ByteStream {
        Box::pin(Verify {
            inner,
            hasher: Some(blake3::Hasher::new()),
            expected,
        })
    }
}

impl Stream for Verify {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(h) = &mut self.hasher {
                    h.update(&chunk);
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => match self.hasher.take() {
                Some(h) if checksum_string(&h.finalize()) != self.expected => Poll::Ready(Some(
                    Err(Error::consistency("body does not match its checksum")),
                )),
                _ => Poll::Ready(None),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::adapters::once_stream;

    #[tokio::test]
    async fn verify_passes_matching_bodies_and_fails_others() {
        let body = Bytes::from_static(b"hello world");
        let good = checksum_string(&blake3::hash(&body));
        let mut ok = Verify::wrap(once_stream(body.clone()), good);
        assert_eq!(ok.next().await.unwrap().unwrap(), body);
        assert!(ok.next().await.is_none());
        let bad = checksum_string(&blake3::hash(b"other"));
        let mut wrong = Verify::wrap(once_stream(body.clone()), bad);
        assert!(wrong.next().await.unwrap().is_ok());
        let err = wrong.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), crate::ErrorCode::Consistency);
    }

    #[tokio::test]
    async fn tap_hashes_counts_and_keeps_small_streams() {
        let tap = Tap::new(8, true);
        let parts = vec![
            Ok(Bytes::from_static(b"abcd")),
            Ok(Bytes::from_static(b"efg")),
        ];
        let (stream, ended) = tap.wrap(Box::pin(futures::stream::iter(parts)));
        let _: Vec<_> = stream.collect().await;
        ended.await.expect("the end was signalled");
        let tapped = tap.finish();
        assert_eq!(tapped.size, 7);
        assert_eq!(tapped.inline.as_deref(), Some(&b"abcdefg"[..]));
        assert_eq!(tapped.checksum, checksum_string(&blake3::hash(b"abcdefg")));
        let big = Tap::new(2, false);
        let (stream, _) = big.wrap(once_stream(Bytes::from_static(b"abc")));
        let _: Vec<_> = stream.collect().await;
        let tapped = big.finish();
        assert!(tapped.inline.is_none() && tapped.checksum.is_empty());
    }
}
