//! The error type of the envelope format.

use std::fmt;

/// Everything that can go wrong while parsing, encrypting or decrypting.
///
/// No variant ever carries key material or plaintext; `Header` carries only a
/// static description of the rule that was broken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The header is malformed (bad magic, unknown version, inconsistent
    /// lengths, invalid key id, ...). The string names the broken rule.
    Header(&'static str),
    /// The header names a suite this build does not implement.
    UnsupportedSuite(u16),
    /// The header's flags byte is not zero.
    UnknownFlags(u8),
    /// The commitment in the header does not match the one derived from the
    /// key, the salt and the context: wrong key, wrong context, or a
    /// tampered header. Checked before any chunk is decrypted.
    Commitment,
    /// Chunk `chunk` (absolute index within the message) failed AEAD
    /// authentication: tampered, reordered, replayed, or spliced.
    Authentication {
        /// Absolute index of the chunk that failed.
        chunk: u64,
    },
    /// The input ended early: a header or chunk is cut short, or the stream
    /// ended without its short final chunk.
    Truncated,
    /// Bytes follow the point where the message (or the requested range) is
    /// known to end.
    Trailing,
    /// The message would exceed the maximum number of chunks (2^38).
    Limit,
    /// The system random number generator failed.
    Random,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::Header(what) => write!(f, "invalid envelope header: {what}"),
            CryptoError::UnsupportedSuite(suite) => {
                write!(f, "unsupported envelope suite 0x{suite:04x}")
            }
            CryptoError::UnknownFlags(flags) => {
                write!(f, "unknown envelope header flags 0x{flags:02x}")
            }
            CryptoError::Commitment => f.write_str(
                "envelope key commitment mismatch (wrong key, wrong context or tampered header)",
            ),
            CryptoError::Authentication { chunk } => {
                write!(f, "envelope chunk {chunk} failed authentication")
            }
            CryptoError::Truncated => f.write_str("envelope is truncated"),
            CryptoError::Trailing => f.write_str("unexpected bytes after the end of the envelope"),
            CryptoError::Limit => f.write_str("envelope chunk limit reached"),
            CryptoError::Random => f.write_str("system random number generator failed"),
        }
    }
}

impl std::error::Error for CryptoError {}
