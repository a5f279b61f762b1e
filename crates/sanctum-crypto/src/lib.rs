//! The sanctum envelope format: chunked AES-256-GCM with key commitment.
//!
//! A message is a small [`Header`] followed by the chunks of
//! [C2SP chunked-encryption] with the Cobblestone-256 parameters
//! (AES-256-GCM, 16 KiB chunks, 24-byte salt, 32-byte commitment). The
//! per-message key, base nonce and commitment are derived from a namespace
//! [`DataKey`], a fresh random salt and a [`Context`] that names where the
//! message belongs and includes the header prefix, so the commitment also
//! authenticates the header. The header's [`Suite`] names the KDF: BLAKE3
//! `derive_key` (the default) or Cobblestone-256's own HKDF-Expand-SHA-512;
//! readers accept both. The full specification is `docs/encryption.md` in
//! the repository.
//!
//! The crate is synchronous and does no I/O: feed bytes to an [`Encryptor`]
//! or [`Decryptor`] as they arrive, or use [`encrypt`] / [`decrypt`] for
//! small values.
//!
//! Every salt comes straight from the OS ([`fill_random`]: one `getrandom`
//! per salt, nothing pooled in the process, so forks and clones of the
//! process never share one). Encryption with a caller-chosen salt exists only
//! for test vectors, in the `hazmat` module behind the cargo feature of the
//! same name, which production builds never enable.
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
#[cfg(feature = "hazmat")]
pub mod hazmat;
mod header;
mod span;

pub use context::{CONTEXT_LABEL, Context, kind};
pub use error::CryptoError;
pub use header::{
    Header, KeyRef, MAGIC, MAX_HEADER_LEN, MAX_KEY_ID_LEN, MIN_HEADER_LEN,
    SUITE_BLAKE3_AES_256_GCM, SUITE_COBBLESTONE_256, Suite, VERSION,
};
pub use span::{ChunkSpan, chunk_span, ciphertext_len, plaintext_len};

use hmac::digest::{FixedOutput, Output};
use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha512;
use std::fmt;
use std::ops::Range;
use std::sync::OnceLock;
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

/// The start of suite 0x0001's HKDF info, fixed by C2SP chunked-encryption: the label, the
/// IANA name of the AEAD and a zero byte.
const C2SP_INFO_HEAD: &[u8] = b"c2sp.org/chunked-encryption@v1+AEAD_AES_256_GCM\0";
/// KDF output: key 32 || base nonce 12 || commitment 32.
const OKM_LEN: usize = KEY_LEN + NONCE_LEN + COMMITMENT_LEN;
/// The BLAKE3 `derive_key` context string of suite 0x0003 (fixed forever).
pub const BLAKE3_KDF_CONTEXT: &str = "sanctum-storage 2026-11-29 envelope suite 0x0003 message key";

/// A 32-byte namespace data key (the C2SP input key). Its bytes, and the
/// keyed HMAC-SHA-512 state that suite 0x0001 derives from them, are
/// zeroized on drop; its `Debug` output never shows the bytes.
#[derive(Clone)]
pub struct DataKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    /// Suite 0x0001's PRK: HMAC-SHA-512 keyed with `bytes` (its inner and
    /// outer padded-key states), set up on the first suite 0x0001 derivation
    /// and cloned for every message after it (the two padded-key blocks are a
    /// fifth of a small message's derivation). Never set up for a key used
    /// only with suite 0x0003. `hmac` and `sha2` are built with their
    /// `zeroize` feature, so this state and every clone of it are wiped on
    /// drop.
    hkdf_prk: OnceLock<Hmac<Sha512>>,
}

/// Compile-time check that an HMAC-SHA-512 state is wiped on drop. `Hmac<Sha512>` is two
/// SHA-512 block states (inner and outer padded key) and a block buffer, and each of them wipes
/// itself only when `sha2` and `hmac` (hence `digest` and `block-buffer`) are built with their
/// `zeroize` feature (workspace Cargo.toml); without it this does not compile.
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<<Sha512 as hmac::EagerHash>::Core>();
    wiped_on_drop::<hmac::digest::block_api::Buffer<hmac::block_api::HmacCore<Sha512>>>();
};

impl DataKey {
    /// Wraps existing key bytes (which must be uniformly random: CSPRNG or
    /// KDF output).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> DataKey {
        DataKey {
            bytes: Zeroizing::new(bytes),
            hkdf_prk: OnceLock::new(),
        }
    }

    /// Generates a fresh key from the system CSPRNG.
    pub fn generate() -> Result<DataKey, CryptoError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut bytes[..])?;
        Ok(DataKey {
            bytes,
            hkdf_prk: OnceLock::new(),
        })
    }

    /// The key bytes, e.g. for wrapping under a KEK. Do not log or store them.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Suite 0x0001's PRK (HMAC-SHA-512 keyed with the data key), set up on
    /// first use. The setup builds the padded key block (key XOR ipad, then
    /// opad) in a stack temporary of `hmac` that is not wiped: once per key
    /// and process, overwritten by later calls.
    fn hkdf_prk(&self) -> &Hmac<Sha512> {
        self.hkdf_prk.get_or_init(|| {
            <Hmac<Sha512> as KeyInit>::new_from_slice(&self.bytes[..])
                .expect("HMAC takes keys of any length")
        })
    }

    /// Whether suite 0x0001's PRK has been set up (unit tests).
    #[cfg(test)]
    fn has_hkdf_prk(&self) -> bool {
        self.hkdf_prk.get().is_some()
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

    /// Appends the encryption of chunk `chunk`, whose plaintext is `head`
    /// followed by `tail`, to `out` (ciphertext, then tag): the plaintext is
    /// copied into `out` once and sealed there in place.
    fn seal(
        &self,
        chunk: u64,
        head: &[u8],
        tail: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let start = out.len();
        out.extend_from_slice(head);
        out.extend_from_slice(tail);
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

    /// Appends the plaintext of chunk `chunk`, whose encryption (ciphertext
    /// || tag) is `head` followed by `tail`, to `out`: the ciphertext is
    /// copied into `out` once and opened there in place.
    ///
    /// On failure `out` is wiped and truncated back to its length before the
    /// call, so it never shows bytes of a chunk whose tag did not verify.
    fn open(
        &self,
        chunk: u64,
        head: &[u8],
        tail: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let start = out.len();
        out.extend_from_slice(head);
        out.extend_from_slice(tail);
        match self
            .key
            .open_in_place(self.nonce(chunk), Aad::empty(), &mut out[start..])
        {
            Ok(plaintext) => {
                let end = start + plaintext.len();
                out.truncate(end);
                Ok(())
            }
            Err(_) => {
                // ring has zeroed the would-be plaintext already; be explicit.
                out[start..].zeroize();
                out.truncate(start);
                Err(CryptoError::Authentication { chunk })
            }
        }
    }

    /// Opens chunk `chunk` in place: its encryption (ciphertext || tag) is
    /// `in_out[src..]`, and its plaintext moves to the front of `in_out`
    /// (AES's own pass does the move). Returns the plaintext length. On
    /// failure the whole of `in_out` is wiped.
    fn open_within(&self, chunk: u64, in_out: &mut [u8], src: usize) -> Result<usize, CryptoError> {
        match self
            .key
            .open_within(self.nonce(chunk), Aad::empty(), in_out, src..)
        {
            Ok(plaintext) => Ok(plaintext.len()),
            Err(_) => {
                in_out.zeroize();
                Err(CryptoError::Authentication { chunk })
            }
        }
    }
}

/// A fresh 24-byte salt, straight from the OS CSPRNG: one `getrandom` call per salt and nothing
/// kept in the process (see [`fill_random`]), so no copy of the process (a forked child, a
/// child in a new PID namespace, a restored checkpoint) can hand out a salt another copy hands
/// out too.
fn fresh_salt() -> Result<[u8; SALT_LEN], CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    fill_random(&mut salt)?;
    Ok(salt)
}

/// Fills `buf` with bytes from the operating system's CSPRNG (the `getrandom(2)` system call on
/// Linux, through ring's `SystemRandom`). Use it for anything that must never repeat: salts,
/// nonces, ids.
///
/// **Fork safe.** Every call asks the kernel; nothing is pooled, buffered or cached in the
/// process. A forked child, a child in a new PID namespace (which may have its parent's pid)
/// and a process restored from a checkpoint (CRIU) share no unused random bytes with the
/// process they were copied from, since the kernel's generator is not in the copied memory. A
/// cloned virtual machine copies the kernel too: Linux (5.18 and later) reseeds its generator
/// when the hypervisor announces the clone through a VM generation ID, which is the protection
/// a VM clone has; a process that caches nothing adds no window of its own.
///
/// Errors with [`CryptoError::Random`] if the OS refuses.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| CryptoError::Random)
}

/// KDF input up to this many bytes is assembled on the stack; longer input (very long context
/// fields) on the heap.
const KDF_STACK_LEN: usize = 576;

/// Key derivation for a message with `header` (whose suite, salt and prefix
/// are used) in `ctx`: returns the chunk cipher and the commitment.
///
/// The input both suites share (section 5 of the format: the salt, then the
/// context of [`Context::encode`]) is built from borrowed parts.
fn derive(
    key: &DataKey,
    ctx: &Context<'_>,
    header: &Header,
) -> Result<(ChunkCipher, [u8; COMMITMENT_LEN]), CryptoError> {
    let (fixed, key_id, epoch) = header.prefix_parts();
    let [label, tenant, namespace, object_key, body_id, kind] = ctx.fields_before_prefix();
    let lp = context::length_prefix;
    let lens = [
        lp(label.len()),
        lp(tenant.len()),
        lp(namespace.len()),
        lp(object_key.len()),
        lp(body_id.len()),
        lp(kind.len()),
        lp(fixed.len() + key_id.len() + epoch.len()),
    ];
    let parts: [&[u8]; 17] = [
        &header.salt,
        &lens[0],
        label,
        &lens[1],
        tenant,
        &lens[2],
        namespace,
        &lens[3],
        object_key,
        &lens[4],
        body_id,
        &lens[5],
        kind,
        &lens[6],
        &fixed,
        key_id,
        &epoch,
    ];
    derive_parts(header.suite, key, &parts)
}

/// The suite's KDF over `parts` (salt and context, concatenated) under
/// `key`, split into the chunk cipher and the commitment.
///
/// Suite 0x0001: HKDF-Expand-SHA-512 with the data key as PRK and info
/// `C2SP_INFO_HEAD || parts`. Suite 0x0003: 76 bytes of BLAKE3 `derive_key`
/// output, context [`BLAKE3_KDF_CONTEXT`], key material `data key || parts`.
fn derive_parts(
    suite: Suite,
    key: &DataKey,
    parts: &[&[u8]],
) -> Result<(ChunkCipher, [u8; COMMITMENT_LEN]), CryptoError> {
    let failed = |_| CryptoError::Header("key derivation failed");
    let mut okm = Zeroizing::new([0u8; OKM_LEN]);
    match suite {
        Suite::Cobblestone256 => concatenated(C2SP_INFO_HEAD, parts, false, |info| {
            hkdf_expand_sha512(key.hkdf_prk(), info, &mut okm)
        }),
        Suite::Blake3Aes256Gcm => concatenated(&key.bytes[..], parts, true, |material| {
            blake3_kdf(material, &mut okm)
        }),
    }
    let unbound = UnboundKey::new(&AES_256_GCM, &okm[..KEY_LEN]).map_err(failed)?;
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

/// Calls `f` with `head || parts` in one contiguous buffer (one hash update instead of one per
/// field). When `secret` (suite 0x0003's buffer holds the data key), the bytes used are wiped
/// afterwards; only those, since a volatile wipe of the whole buffer cost more than the copy.
fn concatenated<R>(head: &[u8], parts: &[&[u8]], secret: bool, f: impl FnOnce(&[u8]) -> R) -> R {
    let len = head.len() + parts.iter().map(|part| part.len()).sum::<usize>();
    let mut stack = [0u8; KDF_STACK_LEN];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= KDF_STACK_LEN {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap[..]
    };
    let mut at = 0;
    for part in std::iter::once(head).chain(parts.iter().copied()) {
        buf[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    let result = f(buf);
    if secret {
        buf.zeroize();
    }
    result
}

/// Suite 0x0001's KDF: HKDF-Expand-SHA-512 (RFC 5869) with `prk` (HMAC-SHA-512 keyed with the
/// data key) and `info`, 76 bytes into `okm`: `T(1) = HMAC(PRK, info || 0x01)`,
/// `T(2) = HMAC(PRK, T(1) || info || 0x02)`, `okm = (T(1) || T(2))[..76]`.
///
/// The HMAC states are clones of `prk`, wiped on drop; `T(1)` and `T(2)` are wiped here. Not
/// wiped: stack temporaries inside `hmac` and `sha2` (each HMAC's inner hash, SHA-512's message
/// schedule and working variables), as in every software hash; later calls overwrite them.
fn hkdf_expand_sha512(prk: &Hmac<Sha512>, info: &[u8], okm: &mut [u8; OKM_LEN]) {
    const HASH_LEN: usize = 64;
    let mut t = Output::<Hmac<Sha512>>::default();
    let mut mac = prk.clone();
    mac.update(info);
    mac.update(&[1]);
    mac.finalize_into(&mut t);
    okm[..HASH_LEN].copy_from_slice(&t);
    let mut mac = prk.clone();
    mac.update(&t);
    mac.update(info);
    mac.update(&[2]);
    mac.finalize_into(&mut t);
    okm[HASH_LEN..].copy_from_slice(&t[..OKM_LEN - HASH_LEN]);
    t.as_mut_slice().zeroize();
}

/// Suite 0x0003's KDF: BLAKE3 in `derive_key` mode over `material` (data key || salt ||
/// context), into `okm`.
///
/// The hasher is not wiped: `material` is longer than one BLAKE3 block with the key in the
/// first block, and `update` compresses full blocks straight from its input, so the hasher keeps
/// only this message's chaining values and the last (public) block. (Wiping its 1920 bytes cost
/// a tenth of a small get.)
fn blake3_kdf(material: &[u8], okm: &mut [u8; OKM_LEN]) {
    use blake3::hazmat::HasherExt;
    // The context string's own hash is the same for every message: computed once.
    static CONTEXT_KEY: std::sync::OnceLock<blake3::hazmat::ContextKey> =
        std::sync::OnceLock::new();
    let context_key =
        CONTEXT_KEY.get_or_init(|| blake3::hazmat::hash_derive_key_context(BLAKE3_KDF_CONTEXT));
    let mut hasher = blake3::Hasher::new_from_context_key(context_key);
    hasher.update(material);
    hasher.finalize_xof().fill(okm);
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
/// complete (a full chunk is never final); each is copied once, into `out`,
/// and sealed there in place. At most one partial chunk is buffered
/// (zeroized on drop).
pub struct Encryptor {
    cipher: ChunkCipher,
    /// Index of the next chunk to seal.
    counter: u64,
    /// The pending partial chunk. Allocated on first use with capacity
    /// CHUNK_SIZE and never reallocated (it never holds a full chunk), so no
    /// copy of plaintext is left behind in freed memory; wiped on drop.
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
    /// Starts a message under `key` in the default [`Suite`] with a fresh
    /// random salt. Returns the encryptor and the header bytes to write
    /// before the chunks.
    pub fn new(
        key: &DataKey,
        key_ref: KeyRef,
        ctx: &Context<'_>,
    ) -> Result<(Encryptor, Vec<u8>), CryptoError> {
        Encryptor::with_suite(Suite::default(), key, key_ref, ctx)
    }

    /// [`Encryptor::new`] in a chosen suite.
    pub fn with_suite(
        suite: Suite,
        key: &DataKey,
        key_ref: KeyRef,
        ctx: &Context<'_>,
    ) -> Result<(Encryptor, Vec<u8>), CryptoError> {
        Encryptor::start(suite, key, key_ref, ctx, fresh_salt()?)
    }

    /// Starts a message with `salt`. Not public: a caller-chosen salt is reachable only
    /// through the `hazmat` module (cargo feature `hazmat`, for test vectors) and the unit
    /// tests, since reusing a salt with the same key and context reuses the AES-GCM key and
    /// nonces.
    pub(crate) fn start(
        suite: Suite,
        key: &DataKey,
        key_ref: KeyRef,
        ctx: &Context<'_>,
        salt: [u8; SALT_LEN],
    ) -> Result<(Encryptor, Vec<u8>), CryptoError> {
        key_ref.validate()?;
        ctx.check()?;
        let mut header = Header {
            suite,
            key_ref,
            salt,
            commitment: [0; COMMITMENT_LEN],
        };
        let (cipher, commitment) = derive(key, ctx, &header)?;
        header.commitment = commitment;
        let enc = Encryptor {
            cipher,
            counter: 0,
            buf: Zeroizing::new(Vec::new()),
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
        match self.seal_full_chunks(plaintext, out) {
            Ok(rest) => {
                self.buffer(rest);
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Seals every full chunk of the buffered bytes followed by `input`
    /// straight into `out` (the buffered part first, if any) and returns the
    /// rest of `input`, which with the buffered bytes is less than a chunk.
    fn seal_full_chunks<'a>(
        &mut self,
        input: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<&'a [u8], CryptoError> {
        let full = (self.buf.len() + input.len()) / CHUNK_SIZE;
        if full == 0 {
            return Ok(input);
        }
        out.reserve(full * ENCRYPTED_CHUNK_SIZE);
        let mut input = input;
        if !self.buf.is_empty() {
            let (head, rest) = input.split_at(CHUNK_SIZE - self.buf.len());
            Self::seal_full(&self.cipher, &mut self.counter, &self.buf, head, out)?;
            // The stale plaintext stays in the allocation until it is
            // overwritten or wiped on drop.
            self.buf.clear();
            input = rest;
        }
        let mut chunks = input.chunks_exact(CHUNK_SIZE);
        for chunk in &mut chunks {
            Self::seal_full(&self.cipher, &mut self.counter, chunk, &[], out)?;
        }
        Ok(chunks.remainder())
    }

    /// Seals the full (hence non-final) chunk `head` || `tail`. The final
    /// chunk needs an index too, so a full chunk may not take the last index.
    fn seal_full(
        cipher: &ChunkCipher,
        counter: &mut u64,
        head: &[u8],
        tail: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        debug_assert_eq!(head.len() + tail.len(), CHUNK_SIZE);
        if *counter >= MAX_CHUNKS - 1 {
            return Err(CryptoError::Limit);
        }
        cipher.seal(*counter, head, tail, out)?;
        *counter += 1;
        Ok(())
    }

    /// Appends less than a chunk of plaintext to the pending partial chunk.
    fn buffer(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        debug_assert!(self.buf.len() + bytes.len() < CHUNK_SIZE);
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(CHUNK_SIZE);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Emits the final (short, possibly empty) chunk.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.finish_with(&[], out)
    }

    /// [`update`](Encryptor::update) with `plaintext`, then
    /// [`finish`](Encryptor::finish), without buffering the final chunk.
    /// Feeds the last `plaintext` and ends the message, as `update` then `finish` would, but
    /// without buffering a partial chunk: the final chunk is sealed straight from `plaintext`.
    pub fn finish_with(mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if self.failed {
            return Err(CryptoError::Limit);
        }
        let rest = self.seal_full_chunks(plaintext, out)?;
        if self.counter >= MAX_CHUNKS {
            return Err(CryptoError::Limit);
        }
        out.reserve(self.buf.len() + rest.len() + TAG_LEN);
        self.cipher.seal(self.counter, &self.buf, rest, out)
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
/// Every chunk is opened in place in the caller's `out`: its ciphertext is
/// copied there once and decrypted there; on a tag failure `out` is cut back
/// to where that chunk started. Only ciphertext is ever buffered inside.
///
/// After any error the decryptor is poisoned: every later call returns the
/// same error. Plaintext already appended to `out` by earlier calls came from
/// verified chunks, but a stream that ends in an error is not a message:
/// discard it all.
pub struct Decryptor {
    cipher: ChunkCipher,
    /// Absolute index of the next chunk to open.
    next_chunk: u64,
    /// Ciphertext not yet opened: a partial chunk, or the one complete chunk
    /// that might be the final one. Never holds plaintext. Allocated on first
    /// use with capacity ENCRYPTED_CHUNK_SIZE.
    held: Vec<u8>,
    failed: Option<CryptoError>,
}

impl fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decryptor")
            .field("next_chunk", &self.next_chunk)
            .field("buffered", &self.held.len())
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
        let (cipher, commitment) = derive(key, ctx, header)?;
        if !commitments_equal(&commitment, &header.commitment) {
            return Err(CryptoError::Commitment);
        }
        Ok(Decryptor {
            cipher,
            next_chunk: first_chunk,
            held: Vec::new(),
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
    ///
    /// Each chunk is decrypted in place in `out` (its ciphertext is copied
    /// there once), so `out` briefly holds [`TAG_LEN`] bytes more than the
    /// plaintext. When `ciphertext` is a whole number of encrypted chunks,
    /// `Vec::with_capacity(ciphertext.len())` is always enough room.
    pub fn update(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.open_followed(ciphertext, out) {
            Ok(rest) => {
                self.hold(rest);
                Ok(())
            }
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Opens, into `out`, every complete chunk of the held bytes followed by
    /// `input` that has more bytes after it (so is not final), and returns
    /// the rest of `input`. Afterwards the held bytes and the rest together
    /// are at most one chunk.
    fn open_followed<'a>(
        &mut self,
        input: &'a [u8],
        out: &mut Vec<u8>,
    ) -> Result<&'a [u8], CryptoError> {
        let total = self.held.len() + input.len();
        if total <= ENCRYPTED_CHUNK_SIZE {
            return Ok(input);
        }
        // Chunks that end before `total` are followed by more bytes. Opening
        // the last of them needs room for its tag too.
        let opened = (total - 1) / ENCRYPTED_CHUNK_SIZE;
        out.reserve(opened * CHUNK_SIZE + TAG_LEN);
        let mut input = input;
        if !self.held.is_empty() {
            // The held-back chunk, or a partial one completed from `input`.
            let (head, rest) = input.split_at(ENCRYPTED_CHUNK_SIZE - self.held.len());
            let index = self.full_chunk_index()?;
            self.cipher.open(index, &self.held, head, out)?;
            self.next_chunk += 1;
            self.held.clear();
            input = rest;
        }
        while input.len() > ENCRYPTED_CHUNK_SIZE {
            let (chunk, rest) = input.split_at(ENCRYPTED_CHUNK_SIZE);
            let index = self.full_chunk_index()?;
            self.cipher.open(index, chunk, &[], out)?;
            self.next_chunk += 1;
            input = rest;
        }
        Ok(input)
    }

    /// Buffers ciphertext (at most a chunk together with what is held).
    fn hold(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        debug_assert!(self.held.len() + bytes.len() <= ENCRYPTED_CHUNK_SIZE);
        if self.held.capacity() == 0 {
            self.held.reserve_exact(ENCRYPTED_CHUNK_SIZE);
        }
        self.held.extend_from_slice(bytes);
    }

    /// Index check for a full (non-final) chunk: the final chunk needs an
    /// index after it.
    fn full_chunk_index(&self) -> Result<u64, CryptoError> {
        if self.next_chunk >= MAX_CHUNKS - 1 {
            return Err(CryptoError::Limit);
        }
        Ok(self.next_chunk)
    }

    /// Ends the stream: verifies the final chunk, which must hold between
    /// 16 and 16399 bytes ([`CryptoError::Truncated`] otherwise, including a
    /// stream that stops on a chunk boundary), and appends its plaintext.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.finish_with(&[], out)
    }

    /// [`update`](Decryptor::update) with `ciphertext`, then
    /// [`finish`](Decryptor::finish), opening the final chunk straight from
    /// `ciphertext` (nothing is buffered).
    fn finish_with(mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let rest = self.open_followed(ciphertext, out)?;
        let len = self.held.len() + rest.len();
        if !(TAG_LEN..ENCRYPTED_CHUNK_SIZE).contains(&len) {
            return Err(CryptoError::Truncated);
        }
        if self.next_chunk >= MAX_CHUNKS {
            return Err(CryptoError::Limit);
        }
        out.reserve(len);
        self.cipher.open(self.next_chunk, &self.held, rest, out)
    }

    /// Ends a ranged read that stops before the final chunk: every consumed
    /// chunk must be a full, verified chunk. A held-back full chunk is
    /// verified and released here; a partial chunk left over is
    /// [`CryptoError::Truncated`].
    ///
    /// This does not authenticate the message's length; to answer a suffix
    /// or size query, decrypt the final chunk with [`Decryptor::finish`].
    pub fn finish_partial(self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        self.finish_partial_with(&[], out)
    }

    /// Opens a run of encrypted chunks held whole in `buf`, in place and
    /// without buffering: the chunks from this decryptor's first chunk on,
    /// back to back. The plaintext moves to the front of `buf` (no copy
    /// beyond AES's own pass) and its length is returned.
    ///
    /// With `last`, `buf` ends the message: every chunk but the short final
    /// one is full, and the final one must be there
    /// ([`CryptoError::Truncated`] otherwise). Without it, `buf` holds full,
    /// non-final chunks only. Runs of one message can be opened on several
    /// threads at once, each with its own decryptor made with the run's first
    /// chunk index.
    ///
    /// Call it on a fresh decryptor (nothing fed through
    /// [`update`](Decryptor::update)); it consumes the decryptor. On any
    /// error all of `buf` is wiped, including plaintext of chunks that had
    /// verified: discard it.
    pub fn open_in_place(self, buf: &mut [u8], last: bool) -> Result<usize, CryptoError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if !self.held.is_empty() {
            return Err(CryptoError::Header(
                "open_in_place needs a decryptor that has not been fed",
            ));
        }
        let full = buf.len() / ENCRYPTED_CHUNK_SIZE;
        let tail = buf.len() % ENCRYPTED_CHUNK_SIZE;
        let fits = match last {
            true => tail >= TAG_LEN,
            false => tail == 0,
        };
        let chunks = full as u64 + u64::from(last);
        if !fits {
            return Err(CryptoError::Truncated);
        }
        if self.next_chunk.saturating_add(chunks) > MAX_CHUNKS {
            return Err(CryptoError::Limit);
        }
        let mut plain = 0;
        let mut src = 0;
        let mut index = self.next_chunk;
        while src < buf.len() {
            let end = (src + ENCRYPTED_CHUNK_SIZE).min(buf.len());
            match self
                .cipher
                .open_within(index, &mut buf[plain..end], src - plain)
            {
                Ok(n) => plain += n,
                Err(e) => {
                    buf.zeroize();
                    return Err(e);
                }
            }
            src = end;
            index += 1;
        }
        Ok(plain)
    }

    /// [`update`](Decryptor::update) with `ciphertext`, then
    /// [`finish_partial`](Decryptor::finish_partial), without buffering.
    fn finish_partial_with(
        mut self,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let rest = self.open_followed(ciphertext, out)?;
        match self.held.len() + rest.len() {
            0 => Ok(()),
            ENCRYPTED_CHUNK_SIZE => {
                let index = self.full_chunk_index()?;
                out.reserve(ENCRYPTED_CHUNK_SIZE);
                self.cipher.open(index, &self.held, rest, out)
            }
            _ => Err(CryptoError::Truncated),
        }
    }
}

/// Encrypts a whole message (header followed by chunks) in the default
/// [`Suite`] with a fresh random salt. Meant for small values; stream large
/// ones with [`Encryptor`].
pub fn encrypt(
    key: &DataKey,
    key_ref: KeyRef,
    ctx: &Context<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    encrypt_with_suite(Suite::default(), key, key_ref, ctx, plaintext)
}

/// [`encrypt`] under a chosen suite.
pub fn encrypt_with_suite(
    suite: Suite,
    key: &DataKey,
    key_ref: KeyRef,
    ctx: &Context<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (enc, header) = Encryptor::with_suite(suite, key, key_ref, ctx)?;
    seal_message(enc, header, plaintext)
}

/// Seals the whole `plaintext` as the message that `enc` started (`message` holds its header).
pub(crate) fn seal_message(
    enc: Encryptor,
    mut message: Vec<u8>,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let body: usize = ciphertext_len(plaintext.len() as u64)
        .try_into()
        .map_err(|_| CryptoError::Limit)?;
    message.reserve_exact(body);
    enc.finish_with(plaintext, &mut message)?;
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
    if !header.encodes_to(head) {
        return Err(CryptoError::Header("header does not match the message"));
    }
    let dec = Decryptor::new(key, header, ctx, 0)?;
    let body = &message[header_len..];
    let pt_len = plaintext_len(body.len() as u64)?;
    // Chunks are opened in place: the last one briefly needs room for its
    // tag. Exact capacity, so `out` never reallocates (which would leave a
    // copy of plaintext behind) and is wiped on error.
    let cap = usize::try_from(pt_len)
        .ok()
        .and_then(|n| n.checked_add(TAG_LEN))
        .ok_or(CryptoError::Limit)?;
    let mut out = Zeroizing::new(Vec::with_capacity(cap));
    dec.finish_with(body, &mut out)?;
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
    let dec = Decryptor::new(key, header, ctx, span.first_chunk)?;
    // In-place opening never needs more room than the ciphertext takes.
    let mut out = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    if span.includes_final {
        dec.finish_with(ciphertext, &mut out)?;
    } else {
        dec.finish_partial_with(ciphertext, &mut out)?;
    }
    // Both are bounded by the decrypted length, which fits in memory.
    let skip = usize::try_from(span.skip).map_err(|_| CryptoError::Limit)?;
    let take = usize::try_from(span.take).map_err(|_| CryptoError::Limit)?;
    let end = skip.checked_add(take).ok_or(CryptoError::Truncated)?;
    if end > out.len() {
        return Err(CryptoError::Truncated);
    }
    if take < out.capacity() / 2 {
        // Mostly waste (a short range): copy it out; `out` is wiped on drop.
        return Ok(out[skip..end].to_vec());
    }
    // Mostly the range: trim in place and wipe the rest of the allocation
    // (the skipped and trailing plaintext, at most a chunk each).
    if skip > 0 {
        out.copy_within(skip..end, 0);
    }
    out.truncate(take);
    out.spare_capacity_mut().zeroize();
    Ok(std::mem::take(&mut *out))
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
        let (cipher, _) = derive_parts(
            Suite::Cobblestone256,
            &DataKey::from_bytes([0; 32]),
            &[&[0; 24]],
        )
        .unwrap();
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

    /// `derive` (parts, concatenated on the stack or the heap) matches the
    /// specification's info built with `Context::encode`.
    #[test]
    fn derive_matches_the_encoded_context() {
        let key = DataKey::from_bytes([9; 32]);
        let long = "k".repeat(KDF_STACK_LEN);
        let mut header = Header {
            suite: Suite::Cobblestone256,
            key_ref: kr(),
            salt: [3; SALT_LEN],
            commitment: [0; COMMITMENT_LEN],
        };
        let cases = [("k", "k1"), (&long[..], "k1"), ("k", &"z".repeat(64)[..])];
        for ((object_key, key_id), suite) in cases
            .into_iter()
            .flat_map(|c| [(c, Suite::Cobblestone256), (c, Suite::Blake3Aes256Gcm)])
        {
            header.suite = suite;
            header.key_ref = KeyRef::new(key_id, 77).unwrap();
            let c = Context {
                object_key,
                ..ctx()
            };
            let context = c.encode(&header.prefix());
            let reference: [&[u8]; 2] = [&header.salt, &context];
            let (want, want_commitment) = derive_parts(suite, &key, &reference).unwrap();
            let (got, got_commitment) = derive(&key, &c, &header).unwrap();
            assert_eq!(got_commitment, want_commitment, "{object_key}");
            assert_eq!(got.base_nonce, want.base_nonce, "{object_key}");
            // Same AES key: same ciphertext.
            let mut out = Vec::new();
            let mut again = Vec::new();
            got.seal(0, b"same key?", b"", &mut out).unwrap();
            want.seal(0, b"same key?", b"", &mut again).unwrap();
            assert_eq!(out, again);
        }
    }

    /// Runs of a message opened in place, on their own decryptors, give the
    /// same plaintext as the streaming decryptor; tampering, truncation and
    /// misaligned runs are refused and wipe the buffer.
    #[test]
    fn runs_open_in_place() {
        let key = DataKey::generate().unwrap();
        for size in [
            0usize,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            3 * CHUNK_SIZE + 5,
            4 * CHUNK_SIZE,
        ] {
            let plain: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let message = encrypt(&key, kr(), &ctx(), &plain).unwrap();
            let (header, header_len) = Header::parse(&message).unwrap();
            let body = &message[header_len..];
            let chunks = body.len().div_ceil(ENCRYPTED_CHUNK_SIZE);
            // Every split point on a chunk boundary: two runs, the second one last.
            for split in 0..chunks {
                let (a, b) = body.split_at(split * ENCRYPTED_CHUNK_SIZE);
                let mut first = a.to_vec();
                let mut second = b.to_vec();
                let n = Decryptor::new(&key, &header, &ctx(), 0)
                    .unwrap()
                    .open_in_place(&mut first, false)
                    .unwrap();
                let m = Decryptor::new(&key, &header, &ctx(), split as u64)
                    .unwrap()
                    .open_in_place(&mut second, true)
                    .unwrap();
                let mut joined = first[..n].to_vec();
                joined.extend_from_slice(&second[..m]);
                assert_eq!(joined, plain, "size {size} split {split}");
            }
            // A flipped bit anywhere fails its chunk and wipes the run.
            let mut tampered = body.to_vec();
            let at = tampered.len() - 1;
            tampered[at] ^= 1;
            let err = Decryptor::new(&key, &header, &ctx(), 0)
                .unwrap()
                .open_in_place(&mut tampered, true)
                .unwrap_err();
            assert_eq!(
                err,
                CryptoError::Authentication {
                    chunk: chunks as u64 - 1
                }
            );
            assert!(tampered.iter().all(|&b| b == 0), "wiped");
            // A run started at the wrong index does not open.
            if chunks > 1 {
                let mut shifted = body[ENCRYPTED_CHUNK_SIZE..].to_vec();
                assert!(matches!(
                    Decryptor::new(&key, &header, &ctx(), 0)
                        .unwrap()
                        .open_in_place(&mut shifted, true),
                    Err(CryptoError::Authentication { chunk: 0 })
                ));
            }
        }
        // Cut on a chunk boundary: the final chunk is missing.
        let plain = vec![5u8; 2 * CHUNK_SIZE + 9];
        let message = encrypt(&key, kr(), &ctx(), &plain).unwrap();
        let (header, header_len) = Header::parse(&message).unwrap();
        let mut cut = message[header_len..header_len + 2 * ENCRYPTED_CHUNK_SIZE].to_vec();
        let open = |buf: &mut Vec<u8>, last| {
            Decryptor::new(&key, &header, &ctx(), 0)
                .unwrap()
                .open_in_place(buf, last)
        };
        assert_eq!(open(&mut cut, true), Err(CryptoError::Truncated));
        // A non-final run must hold whole chunks.
        let mut ragged = message[header_len..header_len + ENCRYPTED_CHUNK_SIZE + 3].to_vec();
        assert_eq!(open(&mut ragged, false), Err(CryptoError::Truncated));
        // A decryptor already fed is refused.
        let mut fed = Decryptor::new(&key, &header, &ctx(), 0).unwrap();
        fed.update(&message[header_len..header_len + 10], &mut Vec::new())
            .unwrap();
        let mut rest = message[header_len + 10..].to_vec();
        assert!(matches!(
            fed.open_in_place(&mut rest, true),
            Err(CryptoError::Header(_))
        ));
    }

    #[test]
    fn encryption_stops_at_the_chunk_limit() {
        let key = DataKey::from_bytes([7; 32]);
        // Room for exactly the final chunk: a full chunk is refused.
        let (enc, _) = Encryptor::start(Suite::default(), &key, kr(), &ctx(), [1; 24]).unwrap();
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
        let (enc, _) = Encryptor::start(Suite::default(), &key, kr(), &ctx(), [1; 24]).unwrap();
        let mut enc = enc.with_counter(MAX_CHUNKS - 1);
        enc.update(&[5u8; 10], &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        assert_eq!(out.len(), 10 + TAG_LEN);
        // ... and the decryptor accepts it at that index.
        let mut message = Encryptor::start(Suite::default(), &key, kr(), &ctx(), [1; 24])
            .unwrap()
            .1;
        let (header, _) = Header::parse(&message).unwrap();
        message.clear();
        let mut dec = Decryptor::new(&key, &header, &ctx(), MAX_CHUNKS - 1).unwrap();
        let mut pt = Vec::new();
        dec.update(&out, &mut pt).unwrap();
        dec.finish(&mut pt).unwrap();
        assert_eq!(pt, [5u8; 10]);

        // A counter past the limit refuses even the final chunk.
        let (enc, _) = Encryptor::start(Suite::default(), &key, kr(), &ctx(), [1; 24]).unwrap();
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
        let (enc, _) = Encryptor::start(Suite::default(), &key, kr(), &ctx(), [1; 24]).unwrap();
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
    fn salts_are_fresh_os_randomness() {
        // Many salts, all distinct and none all-zero (an unfilled buffer).
        let salts: Vec<[u8; SALT_LEN]> = (0..1000).map(|_| fresh_salt().unwrap()).collect();
        let distinct: std::collections::HashSet<_> = salts.iter().collect();
        assert_eq!(distinct.len(), salts.len());
        assert!(salts.iter().all(|s| s != &[0; SALT_LEN]));
        // fill_random fills the whole buffer, whatever its length.
        for len in [0usize, 1, 24, 1000] {
            let mut a = vec![0u8; len];
            let mut b = vec![0u8; len];
            fill_random(&mut a).unwrap();
            fill_random(&mut b).unwrap();
            if len >= 24 {
                assert_ne!(a, b);
                assert!(a[len - 8..] != [0; 8], "tail left unfilled");
            }
        }
    }

    /// Suite 0x0001's HKDF-Expand (hmac + sha2) equals ring's HKDF-Expand-SHA-512, which the
    /// crate used before, for info lengths around SHA-512's 128-byte block.
    #[test]
    fn hkdf_expand_matches_ring() {
        use ring::hkdf;
        struct Len;
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                OKM_LEN
            }
        }
        for (k, info_len) in [0usize, 1, 63, 64, 111, 112, 127, 128, 129, 200, 1000]
            .into_iter()
            .enumerate()
        {
            let key = DataKey::from_bytes([k as u8 ^ 0xa5; KEY_LEN]);
            let info: Vec<u8> = (0..info_len).map(|i| (i * 7 + k) as u8).collect();
            let mut want = [0u8; OKM_LEN];
            hkdf::Prk::new_less_safe(hkdf::HKDF_SHA512, key.as_bytes())
                .expand(&[&info], Len)
                .unwrap()
                .fill(&mut want)
                .unwrap();
            let mut got = [0u8; OKM_LEN];
            hkdf_expand_sha512(key.hkdf_prk(), &info, &mut got);
            assert_eq!(got, want, "info of {info_len} bytes");
        }
    }

    /// The PRK is set up only for suite 0x0001, once, and a clone of the key carries it.
    #[test]
    fn hkdf_prk_is_set_up_only_for_suite_0x0001() {
        let key = DataKey::from_bytes([3; KEY_LEN]);
        let header = |suite| Header {
            suite,
            key_ref: kr(),
            salt: [4; SALT_LEN],
            commitment: [0; COMMITMENT_LEN],
        };
        derive(&key, &ctx(), &header(Suite::Blake3Aes256Gcm)).unwrap();
        assert!(!key.has_hkdf_prk(), "suite 0x0003 set up an HMAC state");
        assert!(!DataKey::generate().unwrap().has_hkdf_prk());
        let (_, first) = derive(&key, &ctx(), &header(Suite::Cobblestone256)).unwrap();
        assert!(key.has_hkdf_prk());
        let copy = key.clone();
        assert!(copy.has_hkdf_prk());
        // The cached state gives the same derivation as a fresh key's.
        let (_, again) = derive(&copy, &ctx(), &header(Suite::Cobblestone256)).unwrap();
        let fresh = DataKey::from_bytes([3; KEY_LEN]);
        let (_, from_fresh) = derive(&fresh, &ctx(), &header(Suite::Cobblestone256)).unwrap();
        assert_eq!((first, again), (from_fresh, from_fresh));
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
