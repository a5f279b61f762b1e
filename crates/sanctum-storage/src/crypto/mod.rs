//! Envelope encryption: every byte of payload and sensitive metadata is encrypted before it
//! reaches an adapter.
//!
//! The format is `sanctum-crypto` (chunked AES-256-GCM with key commitment; docs/encryption.md).
//! The key hierarchy:
//!
//! ```text
//! KEK (a KeyProvider: local keyring or OpenBao Transit; one per tenant)
//!  └─ tenant key      random, wrapped by the KEK            stored at k/<tenant>/tenant
//!      └─ namespace data keys, one per epoch, wrapped by the tenant key
//!                                                           stored at k/<tenant>/n/<namespace>
//!          └─ per-message key: KDF(data key, fresh salt, context)    never stored
//! ```
//!
//! No object carries a wrapped key; no object read or write calls the KMS once the tenant key
//! is cached. A header never selects a key on its own: its key id must be the namespace's
//! (from the key store under the caller's tenant), and only that namespace's epochs exist.

pub(crate) mod integrity;
pub mod keys;
pub mod memory_provider;
pub(crate) mod streams;

pub use keys::{
    CachedKeys, EpochInfo, EpochState, KekRotation, KeyManager, KeyUpgradeReport, NamespaceKeys,
    TenantKeyRotation,
};
pub use memory_provider::MemoryKeyProvider;
pub use sanctum_keys::{KeyError, KeyErrorKind, KeyProvider, WrappedKey};
pub use sanctum_keys::{LocalKeyring, OpenBaoTransit};

use crate::error::{Error, ErrorCode};

/// Decrypts a whole small message with `key` (already chosen from trusted state). The header
/// is parsed from the message; the caller checked (or fixed) which key it names. The plaintext
/// is wiped when dropped (it may be a data key).
pub(crate) fn decrypt_message(
    key: &sanctum_crypto::DataKey,
    ctx: &sanctum_crypto::Context<'_>,
    message: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, sanctum_crypto::CryptoError> {
    let (header, header_len) = sanctum_crypto::Header::parse(message)?;
    sanctum_crypto::decrypt(key, &header, header_len, ctx, message).map(zeroize::Zeroizing::new)
}

/// Maps a format error to the project's `Encryption` error (messages carry no key or plaintext).
pub(crate) fn crypto_err(err: sanctum_crypto::CryptoError) -> Error {
    Error::new(
        ErrorCode::Encryption,
        format!("encrypted data rejected: {err}"),
    )
    .with_source(err)
}

/// Maps a key-provider error: an unreachable provider is transient, everything else is an
/// `Encryption` error (a destroyed KEK means the tenant was shredded).
pub(crate) fn key_err(err: KeyError) -> Error {
    let code = match err.kind {
        KeyErrorKind::Transient => ErrorCode::TransientAdapter,
        _ => ErrorCode::Encryption,
    };
    let message = match err.kind {
        KeyErrorKind::Destroyed => "the tenant's keys were destroyed (crypto-shredded)".to_string(),
        _ => format!("key provider failed: {}", err.message),
    };
    Error::new(code, message).with_source(err)
}
