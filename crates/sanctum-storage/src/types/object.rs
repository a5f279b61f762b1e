//! [`StorageObject`] and [`ObjectVersion`]: what a blob and each of its versions are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One committed version of a blob: a body plus the metadata written with it.
///
/// A tombstone (written by delete) has no body. A restored version points at an older body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectVersion {
    /// The version id: time-ordered, unique, never reused.
    pub version_id: String,
    /// The id of the immutable body this version reads; `None` for a tombstone.
    pub body_id: Option<String>,
    /// `blake3:<hex>` of the plaintext body; empty for a tombstone.
    pub checksum: String,
    /// Body size in bytes.
    pub size: u64,
    /// When this version was committed, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// When the body was first written (earlier than `created_at_ms` after a restore).
    pub body_created_at_ms: u64,
    /// The content type given on put.
    pub content_type: Option<String>,
    /// User metadata given on put.
    pub metadata: BTreeMap<String, String>,
    /// Whether this version is a delete marker.
    pub tombstone: bool,
    /// The version this one was restored from, if any.
    pub restored_from: Option<String>,
}

/// A blob as the facade reports it: where it lives and its current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageObject {
    /// The namespace name within the caller's tenant.
    pub namespace: String,
    /// The object key.
    pub key: String,
    /// The current version.
    pub version: ObjectVersion,
}
