//! Helpers shared by the integration tests.
#![allow(dead_code)]

use sanctum_crypto::{Context, DataKey, KeyRef};

/// The fixed input key of the test vectors: bytes 0..32.
pub fn vector_key() -> DataKey {
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = i as u8;
    }
    DataKey::from_bytes(k)
}

/// The fixed salt of the test vectors: bytes 100..124.
pub fn vector_salt() -> [u8; 24] {
    let mut s = [0u8; 24];
    for (i, b) in s.iter_mut().enumerate() {
        *b = 100 + i as u8;
    }
    s
}

/// The fixed context of the test vectors.
pub fn vector_ctx() -> Context<'static> {
    Context {
        tenant: "acme",
        namespace: "docs",
        object_key: "a/b.txt",
        body_id: "01j0000000000000000000000",
        kind: "blob-body",
    }
}

/// The fixed key reference of the test vectors.
pub fn vector_key_ref() -> KeyRef {
    KeyRef::new("ns-docs", 1).unwrap()
}

/// Plaintext of `n` bytes with byte i = i % 251.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}
