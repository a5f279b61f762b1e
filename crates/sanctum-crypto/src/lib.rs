//! The sanctum envelope format: chunked AES-256-GCM with key commitment.
//!
//! A message is a small [`Header`] followed by the chunks of
//! [C2SP chunked-encryption] with the Cobblestone-256 parameters
//! (AES-256-GCM, HKDF-Expand-SHA-512, 16 KiB chunks, 24-byte salt, 32-byte
//! commitment). The per-message key, base nonce and commitment are derived
//! from a namespace [`DataKey`], a fresh random salt and a [`Context`] that
//! names where the message belongs and includes the header prefix, so the
//! commitment also authenticates the header. The full specification is
//! `docs/encryption.md` in the repository.
//!
//! The crate is synchronous and does no I/O: feed bytes to an [`Encryptor`]
//! or [`Decryptor`] as they arrive, or use [`encrypt`] / [`decrypt`] for
//! small values.
//!
//! ```
//! use sanctum_crypto::{Context, DataKey, Header, KeyRef, decrypt, encrypt};
//!
//! let key = DataKey::generate()?;
//! let ctx = Context {
//!     tenant: "acme",
//!     namespace: "docs",
//!     object_key: "a/b.txt",
//!     body_id: "01j0000000000000000000000",
//!     kind: "blob-body",
//! };
//! let message = encrypt(&key, KeyRef::new("ns-docs", 1)?, &ctx, b"hello")?;
//!
//! let (header, header_len) = Header::parse(&message)?;
//! // Check header.key_ref against the tenant/namespace's keys before use.
//! let plaintext = decrypt(&key, &header, header_len, &ctx, &message)?;
//! assert_eq!(plaintext, b"hello");
//! # Ok::<(), sanctum_crypto::CryptoError>(())
//! ```
//!
//! [C2SP chunked-encryption]: https://c2sp.org/chunked-encryption
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod context;
mod error;
mod header;
mod span;

pub use context::{CONTEXT_LABEL, Context, kind};
pub use error::CryptoError;
pub use header::{
    Header, KeyRef, MAGIC, MAX_HEADER_LEN, MAX_KEY_ID_LEN, MIN_HEADER_LEN, SUITE_COBBLESTONE_256,
    VERSION,
};
pub use span::{ChunkSpan, chunk_span, ciphertext_len, plaintext_len};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use std::ops::Range;
use zeroize::{Zeroize, Zeroizing};

/// Plaintext bytes per chunk (every chunk but the final one is full).
pub const CHUNK_SIZE: usize = 16384;
/// AEAD tag bytes per chunk.
pub const TAG_LEN: usize = 16;
/// Bytes of the per-message random salt.
pub const SALT_LEN: usize = 24;
/// Bytes of the key commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Bytes of a full encrypted chunk.
pub const ENCRYPTED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_LEN;
/// Bytes of a data key (AES-256).
pub const KEY_LEN: usize = 32;
/// The most chunks one message may have (2^38, C2SP's limit).
pub const MAX_CHUNKS: u64 = 1 << 38;
/// The longest plaintext one message may hold: 2^38 - 1 full chunks and a
/// 16383-byte final chunk.
pub const MAX_PLAINTEXT_LEN: u64 = MAX_CHUNKS * CHUNK_SIZE as u64 - 1;

/// HKDF info prefix fixed by C2SP chunked-encryption.
const INFO_PREFIX: &[u8] = b"c2sp.org/chunked-encryption@v1+";
/// IANA name of the suite's AEAD.
const AEAD_NAME: &[u8] = b"AEAD_AES_256_GCM";
/// HKDF output: key 32 || base nonce 12 || commitment 32.
const OKM_LEN: usize = KEY_LEN + NONCE_LEN + COMMITMENT_LEN;

/// A 32-byte namespace data key (the C2SP input key). Zeroized on drop; its
/// `Debug` output never shows the bytes.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// Wraps existing key bytes (which must be uniformly random: CSPRNG or
    /// KDF output).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }

    /// Generates a fresh key from the system CSPRNG.
    pub fn generate() -> Result<DataKey, CryptoError> {
        let mut key = DataKey(Zeroizing::new([0u8; KEY_LEN]));
        SystemRandom::new()
            .fill(&mut key.0[..])
            .map_err(|_| CryptoError::Random)?;
        Ok(key)
    }

    /// The key bytes, e.g. for wrapping under a KEK. Do not log or store them.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The per-message AEAD key and base nonce.
struct ChunkCipher {
    key: LessSafeKey,
    base_nonce: [u8; NONCE_LEN],
}

impl ChunkCipher {
    fn nonce(&self, chunk: u64) -> Nonce {
        let mut n = self.base_nonce;
        for (b, c) in n[NONCE_LEN - 8..].iter_mut().zip(chunk.to_be_bytes()) {
            *b ^= c;
        }
        Nonce::assume_unique_for_key(n)
    }

    /// Appends the encryption of chunk `chunk` (plaintext, then tag) to `out`.
    fn seal(&self, chunk: u64, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let start = out.len();
        out.extend_from_slice(plaintext);
        match self.key.seal_in_place_separate_tag(
            self.nonce(chunk),
            Aad::empty(),
            &mut out[start..],
        ) {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(())
            }
            Err(_) => {
                // Unreachable for 16 KiB chunks; never leave plaintext behind.
                out[start..].zeroize();
                out.truncate(start);
                Err(CryptoError::Limit)
            }
        }
    }

    /// Opens `in_out` (ciphertext || tag) in place and returns the plaintext
    /// length. On failure ring zeroes the would-be plaintext.
    fn open(&self, chunk: u64, in_out: &mut [u8]) -> Result<usize, CryptoError> {
        self.key
            .open_in_place(self.nonce(chunk), Aad::empty(), in_out)
            .map(|pt| pt.len())
            .map_err(|_| CryptoError::Authentication { chunk })
    }
}

/// `ring::hkdf` output length.
struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// Cobblestone key derivation: returns the chunk cipher and the commitment.
fn derive(
    key: &DataKey,
    salt: &[u8; SALT_LEN],
    context: &[u8],
) -> Result<(ChunkCipher, [u8; COMMITMENT_LEN]), CryptoError> {
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA512, &key.0[..]);
    let info: [&[u8]; 5] = [INFO_PREFIX, AEAD_NAME, &[0u8], salt, context];
    let mut okm = Zeroizing::new([0u8; OKM_LEN]);
    prk.expand(&info, OkmLen(OKM_LEN))
        .and_then(|o| o.fill(&mut okm[..]))
        .map_err(|_| CryptoError::Header("key derivation failed"))?;
    let unbound = UnboundKey::new(&AES_256_GCM, &okm[..KEY_LEN])
        .map_err(|_| CryptoError::Header("key derivation failed"))?;
    let mut base_nonce = [0u8; NONCE_LEN];
    base_nonce.copy_from_slice(&okm[KEY_LEN..KEY_LEN + NONCE_LEN]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    commitment.copy_from_slice(&okm[KEY_LEN + NONCE_LEN..]);
    Ok((
        ChunkCipher {
            key: LessSafeKey::new(unbound),
            base_nonce,
        },
        commitment,
    ))
}

/// Constant-time equality of two commitments.
fn commitments_equal(a: &[u8; COMMITMENT_LEN], b: &[u8; COMMITMENT_LEN]) -> bool {
    let mut acc = 0u8;
    for (x, y) in a.iter().zip(b) {
        acc |= std::hint::black_box(x ^ y);
    }
    std::hint::black_box(acc) == 0
}

/// Streaming encryption of one message.
///
/// Create it with [`Encryptor::new`], write the returned header bytes, then
/// feed plaintext with [`update`](Encryptor::update) and end with
/// [`finish`](Encryptor::finish). Full chunks are emitted as soon as they are
/// complete (a full chunk is never final); at most one partial chunk is
/// buffered (zeroized on drop).
pub struct Encryptor {
    cipher: ChunkCipher,
    /// Index of the next chunk to seal.
    counter: u64,
    /// The pending partial chunk (capacity CHUNK_SIZE, never reallocated).
    buf: Zeroizing<Vec<u8>>,
    failed: bool,
}

impl fmt::Debug for Encryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encryptor")
            .field("counter", &self.counter)
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

impl Encryptor {
    /// Starts a message under `key` with a fresh random salt. Returns the
    /// encryptor and the header bytes to write before the chunks.
    pub fn new(
        key: &DataKey,
        key_ref: KeyRef,
        ctx: &Context<'_>,
    ) -> Result<(Encryptor, Vec<u8>), CryptoError> {
        let mut salt = [0u8; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| CryptoError::Random)?;
        Encryptor::with_salt(key, key_ref, ctx, salt)
    }

    /// Like [`Encryptor::new`] with a caller-chosen salt.
    ///
    /// **For test vectors only.** Reusing a salt with the same key and
    /// context reuses the AES-GCM key and nonces, which breaks both
    /// confidentiality and integrity. Production code must use
    /// [`Encryptor::new`].
    pub fn with_salt(
        key: &DataKey,
        key_ref: KeyRef,
        ctx: &Context<'_>,
        salt: [u8; SALT_LEN],
    ) -> Result<(Encryptor, Vec<u8>), CryptoError> {
        key_ref.validate()?;
        ctx.check()?;
        let mut header = Header {
            key_ref,
            salt,
            commitment: [0; COMMITMENT_LEN],
        };
        let context = ctx.encode(&header.prefix());
        let (cipher, commitment) = derive(key, &salt, &context)?;
        header.commitment = commitment;
        let enc = Encryptor {
            cipher,
            counter: 0,
            buf: Zeroizing::new(Vec::with_capacity(CHUNK_SIZE)),
            failed: false,
        };
        Ok((enc, header.encode()))
    }

    /// Test hook: start the chunk counter at `counter` to exercise the limit.
    #[cfg(test)]
    fn with_counter(mut self, counter: u64) -> Encryptor {
        self.counter = counter;
        self
    }

    /// Seals a full (hence non-final) chunk. The final chunk needs an index
    /// too, so a full chunk may not take the last index.
    fn seal_full(
        cipher: &ChunkCipher,
        counter: &mut u64,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        debug_assert_eq!(chunk.len(), CHUNK_SIZE);
        if *counter >= MAX_CHUNKS - 1 {
            return Err(CryptoError::Limit);
        }
        cipher.seal(*counter, chunk, out)?;
        *counter += 1;
        Ok(())
    }

    /// Feeds plaintext; appends every completed encrypted chunk to `out`.
    /// Buffers at most one partial chunk.
    ///
    /// Errors with [`CryptoError::Limit`] when the message would exceed
    /// [`MAX_CHUNKS`]; chunks completed before that point stay in `out`, and
    /// the encryptor refuses any further use.
    pub fn update(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.failed {
            return Err(CryptoError::Limit);
        }
        let r = self.update_inner(plaintext, out);
        self.failed = r.is_err();
        r
    }

    fn update_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let pending = self.buf.len() + input.len();
        out.reserve(pending / CHUNK_SIZE * ENCRYPTED_CHUNK_SIZE);
        if !self.buf.is_empty() {
            let take = (CHUNK_SIZE - self.buf.len()).min(input.len());
            self.buf.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.buf.len() < CHUNK_SIZE {
                return Ok(());
            }
            Self::seal_full(&self.cipher, &mut self.counter, &self.buf, out)?;
            self.buf.clear();
        }
        let mut chunks = input.chunks_exact(CHUNK_SIZE);
        for chunk in &mut chunks {
            Self::seal_full(&self.cipher, &mut self.counter, chunk, out)?;
        }
        self.buf.extend_from_slice(chunks.remainder());
        Ok(())
    }

    /// Emits the final (short, possibly empty) chunk.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.failed || self.counter >= MAX_CHUNKS {
            return Err(CryptoError::Limit);
        }
        out.reserve(self.buf.len() + TAG_LEN);
        self.cipher.seal(self.counter, &self.buf, out)
    }
}

/// Streaming decryption of one message, or of a run of its chunks.
///
/// [`Decryptor::new`] checks the commitment before any chunk is decrypted.
/// Plaintext is released only after its chunk's tag verifies. Because the
/// final chunk is recognised only by being short, a complete 16400-byte
/// chunk is held back until more bytes or [`finish`](Decryptor::finish)
/// show whether it was the last one.
///
/// After any error the decryptor is poisoned: every later call returns the
/// same error. Plaintext already appended to `out` by earlier calls came from
/// verified chunks, but a stream that ends in an error is not a message:
/// discard it all.
pub struct Decryptor {
    cipher: ChunkCipher,
    /// Absolute index of the next chunk to open.
    next_chunk: u64,
    /// Pending ciphertext (capacity ENCRYPTED_CHUNK_SIZE); briefly holds a
    /// chunk's plaintext while it is copied out, zeroized on drop.
    buf: Zeroizing<Vec<u8>>,
    failed: Option<CryptoError>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("next_chunk", &self.next_chunk)
            .field("buffered", &self.buf.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// Derives the message key from `key`, `header` and `ctx`, and checks the
    /// header's commitment in constant time ([`CryptoError::Commitment`] on
    /// mismatch). `first_chunk` is the index of the first chunk that will be
    /// fed (0 for a whole message; see [`chunk_span`] for ranged reads).
    ///
    /// The caller must have checked `header.key_ref` against the tenant and
    /// namespace it trusts before choosing `key`.
    pub fn new(
        key: &DataKey,
        header: &Header,
        ctx: &Context<'_>,
        first_chunk: u64,
    ) -> Result<Decryptor, CryptoError> {
        header.key_ref.validate()?;
        ctx.check()?;
        if first_chunk >= MAX_CHUNKS {
            return Err(CryptoError::Limit);
        }
        let context = ctx.encode(&header.prefix());
        let (cipher, commitment) = derive(key, &header.salt, &context)?;
        if !commitments_equal(&commitment, &header.commitment) {
            return Err(CryptoError::Commitment);
        }
        Ok(Decryptor {
            cipher,
            next_chunk: first_chunk,
            buf: Zeroizing::new(Vec::with_capacity(ENCRYPTED_CHUNK_SIZE)),
            failed: None,
        })
    }

    /// Feeds ciphertext that starts at chunk `first_chunk` (continuing where
    /// the previous call stopped); appends the verified plaintext of every
    /// complete chunk known not to be final to `out`.
    ///
    /// It cannot know whether a full-size 16400-byte chunk is final until
    /// more bytes or `finish` arrive, so it holds back one complete encrypted
    /// chunk until it knows (a 16400-byte chunk followed by the end of the
    /// stream is a truncation). A chunk that fails authentication adds
    /// nothing to `out`.
    pub fn update(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.update_inner(ciphertext, out);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn update_inner(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        out.reserve(input.len());
        while !input.is_empty() {
            if self.buf.len() == ENCRYPTED_CHUNK_SIZE {
                // More bytes follow, so the held-back full chunk is not final.
                self.open_buffered(out)?;
            } else if self.buf.is_empty() && input.len() > ENCRYPTED_CHUNK_SIZE {
                // Fast path: a whole chunk with more bytes after it, opened
                // directly in `out`.
                let (chunk, rest) = input.split_at(ENCRYPTED_CHUNK_SIZE);
                self.open_into(chunk, out)?;
                input = rest;
            } else {
                let take = (ENCRYPTED_CHUNK_SIZE - self.buf.len()).min(input.len());
                self.buf.extend_from_slice(&input[..take]);
                input = &input[take..];
            }
        }
        Ok(())
    }

    /// Index check for a full (non-final) chunk: the final chunk needs an
    /// index after it.
    fn full_chunk_index(&self) -> Result<u64, CryptoError> {
        if self.next_chunk >= MAX_CHUNKS - 1 {
            return Err(CryptoError::Limit);
        }
        Ok(self.next_chunk)
    }

    /// Opens one full encrypted chunk from `chunk` into `out`.
    fn open_into(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let index = self.full_chunk_index()?;
        let start = out.len();
        out.extend_from_slice(chunk);
        match self.cipher.open(index, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                self.next_chunk += 1;
                Ok(())
            }
            Err(e) => {
                // ring has zeroed the plaintext part already; be explicit.
                out[start..].zeroize();
                out.truncate(start);
                Err(e)
            }
        }
    }

    /// Opens the held-back full chunk (known not to be final) into `out`.
    fn open_buffered(&mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let index = self.full_chunk_index()?;
        let n = self.cipher.open(index, &mut self.buf)?;
        out.extend_from_slice(&self.buf[..n]);
        self.buf.clear();
        self.next_chunk += 1;
        Ok(())
    }

    /// Ends the stream: verifies the final chunk, which must hold between
    /// 16 and 16399 bytes ([`CryptoError::Truncated`] otherwise, including a
    /// stream that stops on a chunk boundary), and appends its plaintext.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let len = self.buf.len();
        if !(TAG_LEN..ENCRYPTED_CHUNK_SIZE).contains(&len) {
            return Err(CryptoError::Truncated);
        }
        if self.next_chunk >= MAX_CHUNKS {
            return Err(CryptoError::Limit);
        }
        let n = self.cipher.open(self.next_chunk, &mut self.buf)?;
        out.extend_from_slice(&self.buf[..n]);
        Ok(())
    }

    /// Ends a ranged read that stops before the final chunk: every consumed
    /// chunk must be a full, verified chunk. A held-back full chunk is
    /// verified and released here; a partial chunk left over is
    /// [`CryptoError::Truncated`].
    ///
    /// This does not authenticate the message's length; to answer a suffix
    /// or size query, decrypt the final chunk with [`Decryptor::finish`].
    pub fn finish_partial(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        match self.buf.len() {
            0 => Ok(()),
            ENCRYPTED_CHUNK_SIZE => self.open_buffered(out),
            _ => Err(CryptoError::Truncated),
        }
    }
}

/// Encrypts a whole message (header followed by chunks) with a fresh random
/// salt. Meant for small values; stream large ones with [`Encryptor`].
pub fn encrypt(
    key: &DataKey,
    key_ref: KeyRef,
    ctx: &Context<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (enc, header) = Encryptor::new(key, key_ref, ctx)?;
    seal_message(enc, header, plaintext)
}

/// [`encrypt`] with a caller-chosen salt. **For test vectors only**; see
/// [`Encryptor::with_salt`].
pub fn encrypt_with_salt(
    key: &DataKey,
    key_ref: KeyRef,
    ctx: &Context<'_>,
    salt: [u8; SALT_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (enc, header) = Encryptor::with_salt(key, key_ref, ctx, salt)?;
    seal_message(enc, header, plaintext)
}

fn seal_message(
    mut enc: Encryptor,
    mut message: Vec<u8>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let body: usize = ciphertext_len(plaintext.len() as u64)
        .try_into()
        .map_err(|_| CryptoError::Limit)?;
    message.reserve_exact(body);
    enc.update(plaintext, &mut message)?;
    enc.finish(&mut message)?;
    Ok(message)
}

/// Decrypts a whole message. `header` and `header_len` come from
/// [`Header::parse`] on `message` (after the caller checked
/// `header.key_ref` against trusted state); `message` is the whole message,
/// header included.
///
/// Either returns all of the plaintext or an error and no plaintext.
pub fn decrypt(
    key: &DataKey,
    header: &Header,
    header_len: usize,
    ctx: &Context<'_>,
    message: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    if header_len != header.len() {
        return Err(CryptoError::Header("header_len disagrees with the header"));
    }
    let head = message.get(..header_len).ok_or(CryptoError::Truncated)?;
    if head != header.encode().as_slice() {
        return Err(CryptoError::Header("header does not match the message"));
    }
    let mut dec = Decryptor::new(key, header, ctx, 0)?;
    let body = &message[header_len..];
    let pt_len = plaintext_len(body.len() as u64)?;
    let mut out = Zeroizing::new(Vec::with_capacity(
        usize::try_from(pt_len).map_err(|_| CryptoError::Limit)?,
    ));
    dec.update(body, &mut out)?;
    dec.finish(&mut out)?;
    Ok(std::mem::take(&mut *out))
}

/// Decrypts the plaintext byte range `range` of a message that holds
/// `plaintext_len` bytes, given exactly the ciphertext bytes
/// `chunk_span(range, plaintext_len).ciphertext` (relative to the end of the
/// header). Fewer bytes are [`CryptoError::Truncated`], more are
/// [`CryptoError::Trailing`].
///
/// `plaintext_len` is normally derived with [`plaintext_len`] from the
/// stored object's size. Unless the span includes the final chunk, the
/// message's length is not authenticated by this call.
pub fn decrypt_range(
    key: &DataKey,
    header: &Header,
    ctx: &Context<'_>,
    plaintext_len: u64,
    range: Range<u64>,
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let span = chunk_span(range, plaintext_len);
    let want = span.ciphertext.end - span.ciphertext.start;
    match (ciphertext.len() as u64).cmp(&want) {
        std::cmp::Ordering::Less => return Err(CryptoError::Truncated),
        std::cmp::Ordering::Greater => return Err(CryptoError::Trailing),
        std::cmp::Ordering::Equal => {}
    }
    let mut dec = Decryptor::new(key, header, ctx, span.first_chunk)?;
    let mut out = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    dec.update(ciphertext, &mut out)?;
    if span.includes_final {
        dec.finish(&mut out)?;
    } else {
        dec.finish_partial(&mut out)?;
    }
    // Both are bounded by the decrypted length, which fits in memory.
    let skip = usize::try_from(span.skip).map_err(|_| CryptoError::Limit)?;
    let take = usize::try_from(span.take).map_err(|_| CryptoError::Limit)?;
    let slice = out.get(skip..skip + take).ok_or(CryptoError::Truncated)?;
    Ok(slice.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context<'static> {
        Context {
            tenant: "t",
            namespace: "n",
            object_key: "k",
            body_id: "b",
            kind: kind::RECORD,
        }
    }

    fn kr() -> KeyRef {
        KeyRef::new("k1", 1).unwrap()
    }

    #[test]
    fn nonce_xor_is_big_endian_right_aligned() {
        let (cipher, _) = derive(&DataKey::from_bytes([0; 32]), &[0; 24], b"").unwrap();
        let base = cipher.base_nonce;
        let xor = |i: u64| {
            let mut n = base;
            let be = i.to_be_bytes();
            for k in 0..8 {
                n[4 + k] ^= be[k];
            }
            n
        };
        for i in [0u64, 1, 255, 256, MAX_CHUNKS - 1] {
            assert_eq!(cipher.nonce(i).as_ref(), &xor(i));
        }
    }

    #[test]
    fn encryption_stops_at_the_chunk_limit() {
        let key = DataKey::from_bytes([7; 32]);
        // Room for exactly the final chunk: a full chunk is refused.
        let (enc, _) = Encryptor::with_salt(&key, kr(), &ctx(), [1; 24]).unwrap();
        let mut enc = enc.with_counter(MAX_CHUNKS - 1);
        let mut out = Vec::new();
        enc.update(&[0u8; 100], &mut out).unwrap();
        assert_eq!(
            enc.update(&vec![0u8; CHUNK_SIZE], &mut out),
            Err(CryptoError::Limit)
        );
        assert!(out.is_empty());
        // Poisoned afterwards.
        assert_eq!(enc.update(b"", &mut out), Err(CryptoError::Limit));
        assert_eq!(enc.finish(&mut out), Err(CryptoError::Limit));

        // The last index can still hold the short final chunk ...
        let (enc, _) = Encryptor::with_salt(&key, kr(), &ctx(), [1; 24]).unwrap();
        let mut enc = enc.with_counter(MAX_CHUNKS - 1);
        enc.update(&[5u8; 10], &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        assert_eq!(out.len(), 10 + TAG_LEN);
        // ... and the decryptor accepts it at that index.
        let mut message = Encryptor::with_salt(&key, kr(), &ctx(), [1; 24]).unwrap().1;
        let (header, _) = Header::parse(&message).unwrap();
        message.clear();
        let mut dec = Decryptor::new(&key, &header, &ctx(), MAX_CHUNKS - 1).unwrap();
        let mut pt = Vec::new();
        dec.update(&out, &mut pt).unwrap();
        dec.finish(&mut pt).unwrap();
        assert_eq!(pt, [5u8; 10]);

        // A counter past the limit refuses even the final chunk.
        let (enc, _) = Encryptor::with_salt(&key, kr(), &ctx(), [1; 24]).unwrap();
        let enc = enc.with_counter(MAX_CHUNKS);
        let mut out = Vec::new();
        assert_eq!(enc.finish(&mut out), Err(CryptoError::Limit));
        assert!(out.is_empty());
        assert_eq!(
            Decryptor::new(&key, &header, &ctx(), MAX_CHUNKS).unwrap_err(),
            CryptoError::Limit
        );
    }

    #[test]
    fn full_chunks_cross_the_limit_one_by_one() {
        let key = DataKey::from_bytes([7; 32]);
        let (enc, _) = Encryptor::with_salt(&key, kr(), &ctx(), [1; 24]).unwrap();
        let mut enc = enc.with_counter(MAX_CHUNKS - 3);
        let mut out = Vec::new();
        // Two full chunks fit (indices 2^38-3 and 2^38-2), the third does not.
        assert_eq!(
            enc.update(&vec![1u8; 3 * CHUNK_SIZE], &mut out),
            Err(CryptoError::Limit)
        );
        assert_eq!(out.len(), 2 * ENCRYPTED_CHUNK_SIZE);
    }

    #[test]
    fn commitment_compare() {
        let a = [3u8; 32];
        let mut b = a;
        assert!(commitments_equal(&a, &b));
        b[31] ^= 1;
        assert!(!commitments_equal(&a, &b));
    }

    #[test]
    fn debug_hides_key() {
        let k = DataKey::from_bytes([0xAB; 32]);
        let s = format!("{k:?}");
        assert!(
            !s.contains("171") && !s.to_lowercase().contains("ab"),
            "{s}"
        );
    }
}
