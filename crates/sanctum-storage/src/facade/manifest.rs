//! The head manifest: one small object per key holding the current version and the history.
//!
//! Encoding: magic `SNH1`, a little-endian `u32` JSON length, the JSON, one flag byte (1 when
//! an inline body follows), then the inline body of the current version. Small bodies are
//! inlined so that a small get is one backend read; the body object is written too.
//! Past [`MAX_HEAD_VERSIONS`] entries the oldest [`SPILL_VERSIONS`] move to an immutable history
//! page, referenced from the head.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::ObjectVersion;

const MAGIC: &[u8; 4] = b"SNH1";
/// Versions kept in the head before the oldest spill into a history page.
pub(crate) const MAX_HEAD_VERSIONS: usize = 256;
/// How many versions one spill moves into a page.
pub(crate) const SPILL_VERSIONS: usize = 128;
/// A head larger than this is treated as corrupt rather than read into memory.
pub(crate) const MAX_HEAD_BYTES: u64 = 16 * 1024 * 1024;

/// The decoded manifest of a key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct HeadManifest {
    /// Newest first; `versions[0]` is current.
    pub versions: Vec<ObjectVersion>,
    /// Ids of history pages, newest first; each holds older versions, newest first.
    #[serde(default)]
    pub history_pages: Vec<String>,
    /// Set while a purge removes the key: the key counts as absent.
    #[serde(default)]
    pub purged: bool,
}

impl HeadManifest {
    /// The current version, unless the key is absent (purged, empty or tombstoned).
    pub(crate) fn live(&self) -> Option<&ObjectVersion> {
        self.versions.first().filter(|v| !v.tombstone && !self.purged)
    }
}

pub(crate) fn encode(manifest: &HeadManifest, inline: Option<&[u8]>) -> Result<Bytes> {
    let json = serde_json::to_vec(manifest)
        .map_err(|e| Error::consistency("cannot encode head manifest").with_source(e))?;
    let mut out = BytesMut::with_capacity(9 + json.len() + inline.map_or(0, <[u8]>::len));
    out.put_slice(MAGIC);
    out.put_u32_le(json.len() as u32);
    out.put_slice(&json);
    match inline {
        Some(body) => {
            out.put_u8(1);
            out.put_slice(body);
        }
        None => out.put_u8(0),
    }
    Ok(out.freeze())
}

pub(crate) fn decode(bytes: Bytes) -> Result<(HeadManifest, Option<Bytes>)> {
    let corrupt = || Error::consistency("head manifest is corrupt");
    if bytes.len() < 9 || &bytes[..4] != MAGIC {
        return Err(corrupt());
    }
    let len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    let json_end = 8usize.checked_add(len).filter(|&e| e < bytes.len()).ok_or_else(corrupt)?;
    let manifest: HeadManifest =
        serde_json::from_slice(&bytes[8..json_end]).map_err(|e| corrupt().with_source(e))?;
    let inline = match bytes[json_end] {
        0 if bytes.len() == json_end + 1 => None,
        1 => Some(bytes.slice(json_end + 1..)),
        _ => return Err(corrupt()),
    };
    if let (Some(body), Some(cur)) = (&inline, manifest.versions.first())
        && body.len() as u64 != cur.size
    {
        return Err(corrupt());
    }
    Ok((manifest, inline))
}

pub(crate) fn encode_page(versions: &[ObjectVersion]) -> Result<Bytes> {
    serde_json::to_vec(versions)
        .map(Bytes::from)
        .map_err(|e| Error::consistency("cannot encode history page").with_source(e))
}

pub(crate) fn decode_page(bytes: &[u8]) -> Result<Vec<ObjectVersion>> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::consistency("history page is corrupt").with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(size: u64) -> ObjectVersion {
        ObjectVersion {
            version_id: "v".into(),
            body_id: Some("b".into()),
            checksum: "blake3:00".into(),
            size,
            created_at_ms: 1,
            body_created_at_ms: 1,
            content_type: None,
            metadata: Default::default(),
            tombstone: false,
            restored_from: None,
        }
    }

    #[test]
    fn round_trip_with_and_without_inline() {
        let m = HeadManifest { versions: vec![version(3)], ..Default::default() };
        let (back, inline) = decode(encode(&m, Some(b"abc")).unwrap()).unwrap();
        assert_eq!(back.versions, m.versions);
        assert_eq!(inline.as_deref(), Some(&b"abc"[..]));
        let (_, inline) = decode(encode(&m, None).unwrap()).unwrap();
        assert!(inline.is_none());
    }

    #[test]
    fn corrupt_heads_are_consistency_errors() {
        let m = HeadManifest { versions: vec![version(3)], ..Default::default() };
        let good = encode(&m, Some(b"abc")).unwrap();
        for bad in [
            Bytes::from_static(b""),
            Bytes::from_static(b"XXXX\0\0\0\0\0"),
            good.slice(..good.len() - 1),
            Bytes::from([&good[..], b"d"].concat()),
            Bytes::from([&b"SNH1\xff\xff\xff\xff"[..], &good[8..]].concat()),
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::Consistency);
        }
    }
}
