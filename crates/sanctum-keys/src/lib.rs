//! Key-encryption-key providers (work in progress).
#![forbid(unsafe_code)]
