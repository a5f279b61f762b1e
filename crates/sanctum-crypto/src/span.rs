//! Length and range arithmetic (no cryptography).

use crate::{CHUNK_SIZE, CryptoError, ENCRYPTED_CHUNK_SIZE, MAX_CHUNKS, TAG_LEN};
use std::ops::Range;

const C: u64 = CHUNK_SIZE as u64;
const E: u64 = ENCRYPTED_CHUNK_SIZE as u64;
const T: u64 = TAG_LEN as u64;

/// Length of the encrypted chunks (excluding the header) of a message with
/// `plaintext_len` bytes: `plaintext_len + 16 * (plaintext_len / 16384 + 1)`.
///
/// Saturates at `u64::MAX` for lengths far beyond [`crate::MAX_PLAINTEXT_LEN`].
pub fn ciphertext_len(plaintext_len: u64) -> u64 {
    let chunks = plaintext_len / C + 1;
    plaintext_len.saturating_add(chunks.saturating_mul(T))
}

/// Inverse of [`ciphertext_len`]: the plaintext length of chunks that are
/// `ciphertext_len` bytes long (excluding the header).
///
/// Per the C2SP rules, the final chunk must hold between 16 and 16399
/// bytes: a length that ends exactly on a 16400-byte boundary (including 0),
/// or 1..=15 bytes past one, is [`CryptoError::Truncated`]. More than 2^38
/// chunks is [`CryptoError::Limit`].
pub fn plaintext_len(ciphertext_len: u64) -> Result<u64, CryptoError> {
    let full = ciphertext_len / E;
    let rem = ciphertext_len % E;
    if rem < T {
        return Err(CryptoError::Truncated);
    }
    if full >= MAX_CHUNKS {
        return Err(CryptoError::Limit);
    }
    Ok(full * C + (rem - T))
}

/// The chunks that cover a plaintext byte range of a message.
///
/// Decrypt chunks `first_chunk..=last_chunk` (ciphertext bytes
/// `ciphertext`, relative to the first chunk byte, i.e. add the header
/// length for an offset into the stored object), drop `skip` plaintext bytes
/// from the front and keep `take` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSpan {
    /// Index of the first chunk to decrypt.
    pub first_chunk: u64,
    /// Index of the last chunk to decrypt (inclusive).
    pub last_chunk: u64,
    /// Ciphertext byte range of those chunks, relative to the start of
    /// chunk 0 (just after the header).
    pub ciphertext: Range<u64>,
    /// Plaintext bytes to drop from the front of the first chunk.
    pub skip: u64,
    /// Plaintext bytes to keep after `skip` (the length of the range after
    /// clamping it to the message).
    pub take: u64,
    /// Whether `last_chunk` is the final chunk of the message; if so, end the
    /// decryption with [`crate::Decryptor::finish`], otherwise with
    /// [`crate::Decryptor::finish_partial`].
    pub includes_final: bool,
}

/// Maps the plaintext byte range `range` of a message holding
/// `plaintext_len` bytes to the chunks that cover it.
///
/// The range is clamped to `0..plaintext_len` first. An empty range (after
/// clamping) still maps to the single chunk that holds `range.start` (the
/// final chunk when it starts at or past the end), with `take == 0`, so the
/// result is always a non-empty run of chunks that can be authenticated.
pub fn chunk_span(range: Range<u64>, plaintext_len: u64) -> ChunkSpan {
    let end = range.end.min(plaintext_len);
    let start = range.start.min(end);
    let final_chunk = plaintext_len / C;
    let first_chunk = start / C;
    let last_chunk = if end > start {
        (end - 1) / C
    } else {
        first_chunk
    };
    let includes_final = last_chunk == final_chunk;
    let ct_start = first_chunk.saturating_mul(E);
    let ct_end = if includes_final {
        ciphertext_len(plaintext_len)
    } else {
        (last_chunk + 1).saturating_mul(E)
    };
    ChunkSpan {
        first_chunk,
        last_chunk,
        ciphertext: ct_start..ct_end,
        skip: start - first_chunk * C,
        take: end - start,
        includes_final,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(ciphertext_len(0), 16);
        assert_eq!(ciphertext_len(1), 17);
        assert_eq!(ciphertext_len(16383), 16399);
        assert_eq!(ciphertext_len(16384), 16416);
        assert_eq!(ciphertext_len(16385), 16417);
        assert_eq!(ciphertext_len(u64::MAX), u64::MAX);
        for p in [0, 1, 16383, 16384, 16385, 32768, 100_000, 1 << 40] {
            assert_eq!(plaintext_len(ciphertext_len(p)), Ok(p), "{p}");
        }
        for bad in [0, 1, 15, 16400, 16401, 16415, 32800] {
            assert_eq!(plaintext_len(bad), Err(CryptoError::Truncated), "{bad}");
        }
        // The largest message: 2^38 - 1 full chunks plus a 16383-byte final one.
        let max = crate::MAX_PLAINTEXT_LEN;
        assert_eq!(plaintext_len(ciphertext_len(max)), Ok(max));
        assert_eq!(
            plaintext_len(ciphertext_len(max + 1)),
            Err(CryptoError::Limit)
        );
    }

    #[test]
    fn spans() {
        let s = chunk_span(0..1, 100_000);
        assert_eq!(
            s,
            ChunkSpan {
                first_chunk: 0,
                last_chunk: 0,
                ciphertext: 0..16400,
                skip: 0,
                take: 1,
                includes_final: false
            }
        );
        let s = chunk_span(16384..16385, 16385);
        assert_eq!(s.first_chunk, 1);
        assert!(s.includes_final);
        assert_eq!(s.ciphertext, 16400..16417);
        // Exact multiple: the range ends at the last full chunk, the empty
        // final chunk is not needed.
        let s = chunk_span(0..16384, 16384);
        assert_eq!(
            (s.first_chunk, s.last_chunk, s.includes_final),
            (0, 0, false)
        );
        // Empty range at the end maps to the (empty) final chunk.
        let s = chunk_span(16384..16384, 16384);
        assert_eq!(
            (s.first_chunk, s.last_chunk, s.includes_final),
            (1, 1, true)
        );
        assert_eq!(s.ciphertext, 16400..16416);
        assert_eq!(s.take, 0);
        // Clamping.
        let s = chunk_span(5..1_000_000, 10);
        assert_eq!((s.skip, s.take, s.ciphertext), (5, 5, 0..26));
        #[allow(clippy::reversed_empty_ranges)]
        let s = chunk_span(50..40, 100);
        assert_eq!(s.take, 0);
    }
}
