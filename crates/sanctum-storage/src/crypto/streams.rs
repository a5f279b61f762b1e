//! Encrypting and decrypting byte streams on the data path, with bounded buffers.
//!
//! Encryption of a large body runs on a blocking worker thread fed through a small channel, so
//! AES-GCM (there) and the BLAKE3 checksum (on the caller's side) use both cores. Decryption
//! runs where the stream is polled and releases a chunk's plaintext only after its tag verified.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::{NamespaceKeys, crypto_err};
use crate::adapters::ByteStream;
use crate::error::{Error, Result};
use sanctum_crypto::{Context, Decryptor, Encryptor, Header};

/// Bodies that grow past this many bytes are encrypted on a worker thread.
pub(crate) const PIPELINE_MIN: u64 = 256 * 1024;
/// Ciphertext is handed on in pieces of about this size. Every piece costs a hand-off between
/// threads (a few microseconds), so pieces are large: 64 KiB pieces halved the throughput of a
/// drained 64 MiB put against 1 MiB ones (1.5-2.6 GB/s against 3.4-4.7 GB/s, measured).
const BATCH: usize = 1024 * 1024;
/// Input is decrypted in pieces of at most this size (a multiple of the encrypted chunk).
const PIECE: usize = 4 * sanctum_crypto::ENCRYPTED_CHUNK_SIZE;
/// Pieces in flight between the stages (2, not 4: a 64 MiB `put_bytes` then grows the process by
/// 2.0-6.9 MiB instead of 3.4-12.3 MiB, at the same throughput, measured in the peer bench).
const DEPTH: usize = 2;

/// Encrypts `input` with the namespace's current key. Returns the header and the stream of the
/// whole message (the header first, then the chunks).
///
/// Encryption starts where the stream is polled; once the body has grown past
/// [`PIPELINE_MIN`] it moves to a worker thread, so small bodies pay no thread hand-off and
/// large ones encrypt on one core while the checksum runs on the other.
pub(crate) fn encrypt_stream(
    keys: &NamespaceKeys,
    ctx: &Context<'_>,
    input: ByteStream,
) -> Result<(Vec<u8>, ByteStream)> {
    let (key_ref, key) = keys.current();
    let (encryptor, header) =
        Encryptor::with_suite(keys.suite(), key, key_ref, ctx).map_err(crypto_err)?;
    let body = Adaptive {
        state: State::Inline {
            encryptor: Box::new(encryptor),
            input,
            seen: 0,
            held: None,
            header: Some(header.clone()),
        },
    };
    Ok((header, Box::pin(body)))
}

/// A buffer for the next ciphertext piece with room for `len` more bytes, starting with the
/// header if it has not been emitted yet (so a small message is one piece).
fn next_piece(header: &mut Option<Vec<u8>>, len: usize) -> Vec<u8> {
    match header.take() {
        Some(mut out) => {
            out.reserve(len);
            out
        }
        None => Vec::with_capacity(len),
    }
}

enum State {
    Inline {
        encryptor: Box<Encryptor>,
        input: ByteStream,
        seen: u64,
        /// The newest piece, kept back so the last one is sealed straight from its bytes.
        held: Option<Bytes>,
        /// The header, until it leads the first piece out.
        header: Option<Vec<u8>>,
    },
    Piped(ByteStream),
    Done,
}

/// Encrypts where polled until the body proves large, then hands over to [`pipeline`].
struct Adaptive {
    state: State,
}

impl Stream for Adaptive {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        loop {
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Piped(stream) => {
                    let item = stream.as_mut().poll_next(cx);
                    if let Poll::Ready(None) = item {
                        self.state = State::Done;
                    }
                    return item;
                }
                State::Inline {
                    encryptor,
                    input,
                    seen,
                    held,
                    header,
                } => match input.as_mut().poll_next(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Err(e))) => {
                        self.state = State::Done;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(Some(Ok(plain))) if *seen + plain.len() as u64 > PIPELINE_MIN => {
                        let State::Inline {
                            encryptor,
                            input,
                            held,
                            header,
                            ..
                        } = std::mem::replace(&mut self.state, State::Done)
                        else {
                            unreachable!("matched above")
                        };
                        let first = held.into_iter().chain([plain]).map(Ok);
                        let rest = futures::stream::iter(first).chain(input);
                        let header = futures::stream::iter(header.map(|h| Ok(Bytes::from(h))));
                        let piped = header.chain(pipeline(*encryptor, Box::pin(rest)));
                        self.state = State::Piped(Box::pin(piped));
                    }
                    Poll::Ready(Some(Ok(plain))) => {
                        *seen += plain.len() as u64;
                        let Some(previous) = held.replace(plain) else {
                            continue;
                        };
                        let mut out =
                            next_piece(header, previous.len() + previous.len() / 1024 + 64);
                        if let Err(e) = encryptor.update(&previous, &mut out) {
                            self.state = State::Done;
                            return Poll::Ready(Some(Err(crypto_err(e))));
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Bytes::from(out))));
                        }
                    }
                    Poll::Ready(None) => {
                        let State::Inline {
                            encryptor,
                            held,
                            mut header,
                            ..
                        } = std::mem::replace(&mut self.state, State::Done)
                        else {
                            unreachable!("matched above")
                        };
                        let last = held.unwrap_or_default();
                        let mut out = next_piece(
                            &mut header,
                            last.len() + last.len() / 1024 + 2 * sanctum_crypto::TAG_LEN,
                        );
                        let sealed = encryptor
                            .finish_with(&last, &mut out)
                            .map(|()| Bytes::from(out))
                            .map_err(crypto_err);
                        return Poll::Ready(Some(sealed));
                    }
                },
            }
        }
    }
}

/// Encrypts on a blocking worker: a task pumps plaintext in, the worker sends ciphertext out.
/// Dropping the returned stream stops the worker and the pump.
fn pipeline(mut encryptor: Encryptor, mut input: ByteStream) -> ByteStream {
    // `None` marks the end of the input: a channel that closes without it was abandoned.
    let (plain_tx, mut plain_rx) = mpsc::channel::<Option<Result<Bytes>>>(DEPTH);
    let (cipher_tx, cipher_rx) = mpsc::channel::<Result<Bytes>>(DEPTH);
    // The pump also watches the reader: if the ciphertext stream is dropped while the input
    // stalls, the pump returns, which closes the worker's channel and ends the worker.
    let reader_gone = cipher_tx.clone();
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                item = input.next() => item,
                () = reader_gone.closed() => return,
            };
            let Some(item) = item else { break };
            let failed = item.is_err();
            if plain_tx.send(Some(item)).await.is_err() || failed {
                return;
            }
        }
        let _ = plain_tx.send(None).await;
    });
    tokio::task::spawn_blocking(move || {
        let fresh = || Vec::with_capacity(BATCH + sanctum_crypto::ENCRYPTED_CHUNK_SIZE);
        let mut out = fresh();
        loop {
            let plain = match plain_rx.blocking_recv() {
                Some(Some(Ok(plain))) => plain,
                Some(Some(Err(e))) => {
                    let _ = cipher_tx.blocking_send(Err(e));
                    return;
                }
                Some(None) => break,
                None => return, // abandoned: never emit a final chunk for an incomplete input
            };
            if let Err(e) = encryptor.update(&plain, &mut out) {
                let _ = cipher_tx.blocking_send(Err(crypto_err(e)));
                return;
            }
            if out.len() >= BATCH
                && cipher_tx
                    .blocking_send(Ok(Bytes::from(std::mem::replace(&mut out, fresh()))))
                    .is_err()
            {
                return; // the reader is gone
            }
        }
        let last = encryptor
            .finish(&mut out)
            .map(|()| Bytes::from(out))
            .map_err(crypto_err);
        let _ = cipher_tx.blocking_send(last);
    });
    Box::pin(futures::stream::unfold(cipher_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Decrypts a message read from storage.
///
/// `input` holds the ciphertext from chunk `first_chunk` on (after `header_bytes` when
/// `with_header` is set, which must then equal the expected header exactly). Plaintext before
/// `skip` and after `take` bytes is dropped; `to_end` says whether the input runs to the end of
/// the message (then the final chunk must be there).
pub(crate) struct DecryptSpec {
    pub header: Header,
    pub header_bytes: Vec<u8>,
    pub with_header: bool,
    pub first_chunk: u64,
    pub skip: u64,
    pub take: u64,
    pub to_end: bool,
}

/// Decrypts `input` per `spec` with the namespace key the header names (checked against the
/// namespace from trusted state).
pub(crate) fn decrypt_stream(
    keys: &NamespaceKeys,
    ctx: &Context<'_>,
    spec: DecryptSpec,
    input: ByteStream,
) -> Result<ByteStream> {
    let key = keys.key_for(&spec.header.key_ref)?;
    let decryptor = Decryptor::new(key, &spec.header, ctx, spec.first_chunk).map_err(crypto_err)?;
    let header_left = if spec.with_header {
        spec.header_bytes.clone()
    } else {
        Vec::new()
    };
    Ok(Box::pin(Decrypting {
        decryptor: Some(decryptor),
        input,
        pending: Bytes::new(),
        header_left,
        header_seen: 0,
        skip: spec.skip,
        take: spec.take,
        to_end: spec.to_end,
        done: false,
    }))
}

struct Decrypting {
    decryptor: Option<Decryptor>,
    input: ByteStream,
    /// Input not yet decrypted.
    pending: Bytes,
    /// The expected header, while it is still being matched against the input.
    header_left: Vec<u8>,
    header_seen: usize,
    skip: u64,
    take: u64,
    to_end: bool,
    done: bool,
}

impl Decrypting {
    /// Drops `skip` bytes from the front and keeps at most `take`.
    fn trim(&mut self, mut out: Vec<u8>) -> Option<Bytes> {
        let mut bytes = Bytes::from(std::mem::take(&mut out));
        let skip = self.skip.min(bytes.len() as u64) as usize;
        self.skip -= skip as u64;
        bytes = bytes.slice(skip..);
        let keep = self.take.min(bytes.len() as u64) as usize;
        self.take -= keep as u64;
        bytes.truncate(keep);
        (!bytes.is_empty()).then_some(bytes)
    }

    fn fail(&mut self, e: Error) -> Poll<Option<Result<Bytes>>> {
        self.done = true;
        self.decryptor = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Decrypting {
    /// Decrypts one piece of input (after matching any header bytes it starts with).
    fn piece(&mut self, mut piece: Bytes) -> Result<Option<Bytes>> {
        if self.header_seen < self.header_left.len() {
            let n = (self.header_left.len() - self.header_seen).min(piece.len());
            if piece[..n] != self.header_left[self.header_seen..self.header_seen + n] {
                return Err(Error::new(
                    crate::ErrorCode::Encryption,
                    "encrypted body header differs from the manifest's",
                ));
            }
            self.header_seen += n;
            piece = piece.slice(n..);
        }
        let mut out = Vec::with_capacity(piece.len());
        let decryptor = self.decryptor.as_mut().expect("present until done");
        decryptor.update(&piece, &mut out).map_err(crypto_err)?;
        Ok(self.trim(out))
    }
}

impl Stream for Decrypting {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            // Large inputs (an in-memory object arrives whole) are decrypted a piece at a time,
            // so memory stays bounded and plaintext flows while the rest is decrypted.
            if !self.pending.is_empty() {
                let n = self.pending.len().min(PIECE);
                let piece = self.pending.split_to(n);
                match self.piece(piece) {
                    Ok(Some(bytes)) => return Poll::Ready(Some(Ok(bytes))),
                    Ok(None) => continue,
                    Err(e) => return self.fail(e),
                }
            }
            match self.input.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return self.fail(e),
                Poll::Ready(Some(Ok(chunk))) => self.pending = chunk,
                Poll::Ready(None) => {
                    self.done = true;
                    if self.header_seen < self.header_left.len() {
                        return self.fail(Error::new(
                            crate::ErrorCode::Encryption,
                            "encrypted body is truncated",
                        ));
                    }
                    let decryptor = self.decryptor.take().expect("present until done");
                    let mut out = Vec::new();
                    let finished = if self.to_end {
                        decryptor.finish(&mut out)
                    } else {
                        decryptor.finish_partial(&mut out)
                    };
                    if let Err(e) = finished {
                        return self.fail(crypto_err(e));
                    }
                    return Poll::Ready(self.trim(out).map(Ok));
                }
            }
        }
    }
}
