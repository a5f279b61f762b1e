//! Encryption with a caller-chosen salt, for test vectors only.
//!
//! Compiled only with the cargo feature `hazmat`, which production builds never enable. Two
//! messages sealed with one salt under the same key and context use the same AES-GCM key and
//! nonces: their ciphertexts XOR to the XOR of their plaintexts, and GCM's authentication key
//! leaks, so forgeries follow. [`Encryptor::new`] and [`encrypt`](crate::encrypt) draw a fresh
//! salt from the OS for every message; use them everywhere else.

use crate::{Context, CryptoError, DataKey, Encryptor, KeyRef, SALT_LEN, Suite, seal_message};

/// [`Encryptor::with_suite`] with a caller-chosen salt: returns the encryptor and the header
/// bytes. **Test vectors only**: never reuse a salt (see the [module](self) docs).
pub fn encryptor_with_salt(
    suite: Suite,
    key: &DataKey,
    key_ref: KeyRef,
    ctx: &Context<'_>,
    salt: [u8; SALT_LEN],
) -> Result<(Encryptor, Vec<u8>), CryptoError> {
    Encryptor::start(suite, key, key_ref, ctx, salt)
}

/// [`encrypt`](crate::encrypt) in `suite` with a caller-chosen salt. **Test vectors only**:
/// never reuse a salt (see the [module](self) docs).
pub fn encrypt_with_salt(
    suite: Suite,
    key: &DataKey,
    key_ref: KeyRef,
    ctx: &Context<'_>,
    salt: [u8; SALT_LEN],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let (enc, header) = Encryptor::start(suite, key, key_ref, ctx, salt)?;
    seal_message(enc, header, plaintext)
}
