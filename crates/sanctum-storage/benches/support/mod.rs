//! What the benchmarks share: the sink every read drains into, and how figures are reduced and
//! printed.

use std::hint::black_box;
use std::time::Duration;

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

/// Bytes in a KiB and in a MiB.
pub const KIB: usize = 1024;
/// Bytes in a MiB.
pub const MIB: usize = 1024 * KIB;

/// The median of `times` (which must not be empty).
pub fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Throughput in MiB/s of `size` bytes in `time`.
pub fn mbps(size: usize, time: Duration) -> f64 {
    size as f64 / MIB as f64 / time.as_secs_f64()
}

/// `4 KiB`, `256 MiB`.
pub fn human(size: usize) -> String {
    if size >= MIB {
        format!("{} MiB", size / MIB)
    } else {
        format!("{} KiB", size / KIB)
    }
}
