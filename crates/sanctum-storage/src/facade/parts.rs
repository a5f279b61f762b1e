//! Whole reads of large encrypted bodies in parts, on both cores.
//!
//! A body is cut into runs of whole encrypted chunks. Each run is read with its own ranged get
//! and opened in place on a blocking thread ([`Decryptor::open_in_place`]), [`IN_FLIGHT`] runs at
//! a time, and the plaintext is handed on in order. Reading and AES of one run overlap those of
//! the next, and after the read no byte is copied: the plaintext of a run is a slice of the
//! buffer it was read into. Memory stays bounded by [`IN_FLIGHT`] runs of at most
//! [`PART_CHUNKS`] chunks, whatever the body's size.
//!
//! Only for adapters whose ranged reads cost no more than whole ones
//! ([`BlobCapabilities::parallel_ranged_reads`](crate::adapters::BlobCapabilities)); the others
//! read a body with one get, decrypted as it streams.
//!
//! Cancel safety: dropping the stream drops the reads in flight; a run being opened on a
//! blocking thread finishes there and is thrown away.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use sanctum_crypto::{Context, DataKey, Decryptor, ENCRYPTED_CHUNK_SIZE, Header};

use super::blob::{missing_body, wrong_body_size};
use crate::adapters::{BlobAdapter, BlobPath, ByteStream, collect_bytes};
use crate::crypto::crypto_err;
use crate::error::{Error, ErrorCode, Result};

/// Plaintext size from which a whole read goes in parts: below it, one read and one pass of AES
/// cost less than the extra hand-offs.
pub(super) const PARTS_MIN: u64 = 256 * 1024;
/// At most this many encrypted chunks (about 1 MiB) per run.
const PART_CHUNKS: u64 = 64;
/// Runs read and opened at once: one per core of the machines this was tuned on (2 cores; 3
/// in flight, or 1, 3, 4 or 8 runs per MiB, measured no better).
const IN_FLIGHT: usize = 2;

/// Where a message is and who it belongs to: everything a run needs, owned, so that runs can
/// be opened on other threads.
pub(super) struct Message {
    pub adapter: Arc<dyn BlobAdapter>,
    pub path: BlobPath,
    /// The whole body object's length (the header and every chunk).
    pub object_len: u64,
    pub header: Header,
    /// The header as stored, which the object must start with.
    pub header_bytes: Vec<u8>,
    pub key: DataKey,
    pub tenant: String,
    pub namespace: String,
    pub object_key: String,
    pub body_id: String,
}

/// One run: chunks from `first_chunk` on, at `range` of the body object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    first_chunk: u64,
    range: Range<u64>,
    /// Whether the run ends the message (it holds the short final chunk).
    last: bool,
}

/// Cuts a message of `plaintext_len` bytes, stored after a header of `header_len` bytes, into
/// runs of equal chunk counts (two when it is small, so both cores work), the first one
/// starting with the header.
fn runs(plaintext_len: u64, header_len: u64) -> Vec<Run> {
    let chunk = ENCRYPTED_CHUNK_SIZE as u64;
    let chunks = plaintext_len / sanctum_crypto::CHUNK_SIZE as u64 + 1;
    let object_len = header_len + sanctum_crypto::ciphertext_len(plaintext_len);
    let per_run = chunks.div_ceil(2).clamp(1, PART_CHUNKS);
    (0..chunks)
        .step_by(per_run as usize)
        .map(|first| {
            let end_chunk = (first + per_run).min(chunks);
            let start = if first == 0 {
                0
            } else {
                header_len + first * chunk
            };
            let end = (header_len + end_chunk * chunk).min(object_len);
            Run {
                first_chunk: first,
                range: start..end,
                last: end_chunk == chunks,
            }
        })
        .collect()
}

/// The plaintext of `message`, whose plaintext is `plaintext_len` bytes, read and opened in runs.
pub(super) fn read(message: Message, plaintext_len: u64) -> ByteStream {
    let header_len = message.header_bytes.len() as u64;
    let message = Arc::new(message);
    let opened = futures::stream::iter(runs(plaintext_len, header_len))
        .map(move |run| read_run(message.clone(), run))
        .buffered(IN_FLIGHT);
    // The first error ends the stream.
    let mut failed = false;
    Box::pin(opened.take_while(move |item| {
        let go = !failed;
        failed |= item.is_err();
        futures::future::ready(go)
    }))
}

async fn read_run(message: Arc<Message>, run: Run) -> Result<Bytes> {
    if message.adapter.capabilities().blocking_reads {
        // Read and open on one blocking thread: one hand-off instead of two.
        let (m, r) = (message.clone(), run.clone());
        let opened = tokio::task::spawn_blocking(move || {
            let (meta, cipher) = m.adapter.get_blocking(&m.path, r.range.clone())?;
            check_read(&m, &r, meta.size, &cipher)?;
            open_run(&m, &r, cipher)
        })
        .await
        .map_err(worker_failed)?;
        match opened {
            Err(e) if e.code() == ErrorCode::NotSupported => {} // a wrapper that does not pass it on
            other => return other.map_err(missing_body),
        }
    }
    let got = message
        .adapter
        .get(&message.path, Some(run.range.clone()))
        .await
        .map_err(missing_body)?;
    let size = got.meta.size;
    let cipher = collect_bytes(got.body).await?;
    check_read(&message, &run, size, &cipher)?;
    tokio::task::spawn_blocking(move || open_run(&message, &run, cipher))
        .await
        .map_err(worker_failed)?
}

fn worker_failed(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorCode::Encryption, "decryption worker failed").with_source(e)
}

/// The object must have the size the version implies, and the run must have come whole.
fn check_read(message: &Message, run: &Run, object_size: u64, cipher: &[u8]) -> Result<()> {
    if object_size != message.object_len {
        return Err(wrong_body_size());
    }
    if cipher.len() as u64 != run.range.end - run.range.start {
        return Err(Error::consistency("body object ended early"));
    }
    Ok(())
}

/// Opens one run in place: the buffer it was read into (reused when this is its only owner)
/// becomes its plaintext.
fn open_run(message: &Message, run: &Run, cipher: Bytes) -> Result<Bytes> {
    let mut buf = BytesMut::from(cipher);
    let skip = match run.first_chunk {
        0 => {
            let header = &message.header_bytes;
            if buf.len() < header.len() || buf[..header.len()] != header[..] {
                return Err(Error::new(
                    ErrorCode::Encryption,
                    "encrypted body header differs from the manifest's",
                ));
            }
            header.len()
        }
        _ => 0,
    };
    let ctx = Context {
        tenant: &message.tenant,
        namespace: &message.namespace,
        object_key: &message.object_key,
        body_id: &message.body_id,
        kind: sanctum_crypto::kind::BLOB_BODY,
    };
    let decryptor =
        Decryptor::new(&message.key, &message.header, &ctx, run.first_chunk).map_err(crypto_err)?;
    let plain = decryptor
        .open_in_place(&mut buf[skip..], run.last)
        .map_err(crypto_err)?;
    Ok(buf.freeze().slice(skip..skip + plain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanctum_crypto::CHUNK_SIZE;

    const C: u64 = CHUNK_SIZE as u64;
    const E: u64 = ENCRYPTED_CHUNK_SIZE as u64;

    /// Runs cover the body object exactly, back to back, on chunk boundaries, with the header
    /// in the first and the final chunk in the last.
    #[test]
    fn runs_tile_the_object() {
        for (len, header) in [
            (0, 60),
            (C - 1, 60),
            (C, 70),
            (PARTS_MIN, 60),
            (1 << 20, 60),
            ((1 << 20) + 5, 61),
            (64 << 20, 60),
            (129 * C, 60),
        ] {
            let runs = runs(len, header);
            let object_len = header + sanctum_crypto::ciphertext_len(len);
            assert_eq!(runs[0].range.start, 0);
            assert_eq!(runs.last().unwrap().range.end, object_len);
            assert!(runs.last().unwrap().last);
            for pair in runs.windows(2) {
                assert_eq!(pair[0].range.end, pair[1].range.start, "{len}");
                assert!(!pair[0].last);
                let chunks = pair[1].first_chunk - pair[0].first_chunk;
                assert!(chunks <= PART_CHUNKS);
                let body = pair[0].range.end - pair[0].range.start;
                let extra = if pair[0].first_chunk == 0 { header } else { 0 };
                assert_eq!(body, chunks * E + extra, "{len}: whole chunks");
            }
            if len >= PARTS_MIN {
                assert!(runs.len() >= 2, "{len}: both cores work");
            }
        }
        // A 1 MiB body is 64 full chunks and an empty final one: two runs.
        let mib = runs(1 << 20, 60);
        assert_eq!(mib.len(), 2);
        assert_eq!(mib[1].first_chunk, 33);
    }
}
