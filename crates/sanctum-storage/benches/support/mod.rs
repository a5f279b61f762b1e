//! What the benchmarks share: the sink every read drains into.

use std::hint::black_box;

use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Where read bytes go: every byte is touched, so nothing is optimised away.
#[derive(Default)]
pub struct Sink {
    /// Bytes taken so far.
    pub bytes: u64,
    check: u64,
}

impl Sink {
    /// Takes one chunk.
    pub fn take(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        // Word-wise, so the drain costs little beside what it measures.
        let mut words = chunk.chunks_exact(8);
        let mut acc = words
            .by_ref()
            .fold(0u64, |a, w| a ^ u64::from_le_bytes(w.try_into().unwrap()));
        for &b in words.remainder() {
            acc ^= u64::from(b);
        }
        self.check ^= acc;
    }

    /// Ends the drain; returns the bytes taken.
    pub fn finish(self) -> u64 {
        black_box(self.check);
        self.bytes
    }
}

/// Drains a stream of byte chunks into a [`Sink`]; returns how many bytes it held.
pub async fn drain<E: std::fmt::Debug>(
    mut body: impl Stream<Item = Result<Bytes, E>> + Unpin,
) -> u64 {
    let mut sink = Sink::default();
    while let Some(chunk) = body.next().await {
        sink.take(&chunk.expect("read"));
    }
    sink.finish()
}
