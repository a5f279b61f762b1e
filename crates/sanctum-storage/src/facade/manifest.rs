//! The head manifest: one small object per key holding the current version and the history.
//!
//! Encoding (little-endian):
//! ```text
//! "SNH2" | u8 flags (1 = purged) | u32 record count | u32 pages length | pages (JSON array of ids)
//!        | records: (u32 length | JSON StoredVersion) x count, newest first
//!        | u8 inline flag | inline body of the current version
//! ```
//! Records are length-prefixed so that a write prepends a version by copying the older records'
//! bytes without parsing them, and a read parses only the current one: the cost of an operation
//! does not grow with the history. Small bodies are inlined so a small get is one backend read
//! (the body object is written too, or, for a small body given whole, when its version stops
//! being current: `StoredVersion::body_deferred`). Past [`MAX_HEAD_VERSIONS`] records the oldest
//! [`SPILL_VERSIONS`] move to an immutable history page (`"SNP1" | u32 count | records`).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"SNH2";
const PAGE_MAGIC: &[u8; 4] = b"SNP1";
const FLAG_PURGED: u8 = 1;
/// Versions kept in the head before the oldest spill into a history page.
pub(crate) const MAX_HEAD_VERSIONS: usize = 256;
/// How many versions one spill moves into a page.
pub(crate) const SPILL_VERSIONS: usize = 128;
/// A head larger than this is treated as corrupt rather than read into memory.
pub(crate) const MAX_HEAD_BYTES: u64 = 16 * 1024 * 1024;

/// One version as stored in a manifest: what is needed to find and decrypt its body in the
/// clear, everything a caller gave (checksum, content type, metadata) sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredVersion {
    pub version_id: String,
    pub body_id: Option<String>,
    pub size: u64,
    pub created_at_ms: u64,
    pub body_created_at_ms: u64,
    pub tombstone: bool,
    pub restored_from: Option<String>,
    /// The body's encryption header (hex): key reference, salt and commitment.
    pub body_header: Option<String>,
    /// Checksum, content type and user metadata, encrypted (hex); `None` for tombstones.
    pub sealed: Option<String>,
    /// Position in the key's chain of versions: the oldest is 1, each newer one adds 1. 0 in
    /// records written before version records were authenticated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
    /// The id of the oldest version of the chain (a key written again after a purge starts a
    /// new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<String>,
    /// Set when the body object is a combined message (the version's metadata, then its body:
    /// `sealing::seal_small`) of this many plaintext bytes; `None` for a plain body message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub combined_len: Option<u64>,
    /// Set when the body object was not written with the version because the head inlines it
    /// (a small version given whole): the commit that makes another version current writes it
    /// from the head first, so only the current version can lack its body object.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_deferred: bool,
    /// The tag of the next older record (`None` for the oldest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<String>,
    /// The record's tag over every other field, the tenant, namespace and key
    /// (`sealing::link`); `None` in records written before version records were authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl StoredVersion {
    /// Bytes of the body object: its header and its encrypted chunks.
    pub(crate) fn body_object_len(&self) -> u64 {
        let plaintext = self.combined_len.unwrap_or(self.size);
        match &self.body_header {
            Some(h) => h.len() as u64 / 2 + sanctum_crypto::ciphertext_len(plaintext),
            None => self.size, // stored in the clear (benchmarks only)
        }
    }
}

fn corrupt() -> Error {
    Error::consistency("head manifest is corrupt")
}

/// The decoded manifest of a key. Only the current version is parsed; older ones stay encoded.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeadManifest {
    /// Set while a purge removes the key: the key counts as absent.
    pub purged: bool,
    /// Ids of history pages, newest first; each holds older versions, newest first.
    pub history_pages: Vec<String>,
    current: Option<StoredVersion>,
    count: usize,
    /// Every record, framed, newest first (the first is `current`).
    records: Bytes,
}

fn put_record(out: &mut BytesMut, version: &StoredVersion) -> Result<()> {
    let json = serde_json::to_vec(version)
        .map_err(|e| Error::consistency("cannot encode a version").with_source(e))?;
    out.put_u32_le(json.len() as u32);
    out.put_slice(&json);
    Ok(())
}

/// Splits framed records: returns the byte length of the first `n` records.
fn records_len(records: &[u8], n: usize) -> Result<usize> {
    let mut at = 0usize;
    for _ in 0..n {
        let len = records.get(at..at + 4).ok_or_else(corrupt)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        at = at
            .checked_add(4 + len)
            .filter(|&e| e <= records.len())
            .ok_or_else(corrupt)?;
    }
    Ok(at)
}

fn parse_records(mut records: &[u8], count: usize) -> Result<Vec<StoredVersion>> {
    // `count` comes from stored bytes: every record takes at least 4 bytes.
    let mut out = Vec::with_capacity(count.min(records.len() / 4));
    for _ in 0..count {
        if records.len() < 4 {
            return Err(corrupt());
        }
        let len = records.get_u32_le() as usize;
        let json = records.get(..len).ok_or_else(corrupt)?;
        out.push(serde_json::from_slice(json).map_err(|e| corrupt().with_source(e))?);
        records = &records[len..];
    }
    if !records.is_empty() {
        return Err(corrupt());
    }
    Ok(out)
}

impl HeadManifest {
    /// A manifest that marks the key purged.
    pub(crate) fn purged_marker() -> Self {
        Self {
            purged: true,
            ..Default::default()
        }
    }

    /// The current version, unless the key is absent (purged, empty or tombstoned).
    pub(crate) fn live(&self) -> Option<&StoredVersion> {
        self.current
            .as_ref()
            .filter(|v| !v.tombstone && !self.purged)
    }

    /// The newest record (a tombstone too), unless the key is purged or empty.
    pub(crate) fn current(&self) -> Option<&StoredVersion> {
        self.current.as_ref().filter(|_| !self.purged)
    }

    /// Whether the manifest lists no version.
    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Every version in the head (not in pages), newest first.
    pub(crate) fn versions(&self) -> Result<Vec<StoredVersion>> {
        parse_records(&self.records, self.count)
    }

    /// The version `id`, if the head (not its pages) lists it.
    pub(crate) fn find(&self, id: &str) -> Result<Option<StoredVersion>> {
        if self.current.as_ref().is_some_and(|c| c.version_id == id) {
            return Ok(self.current.clone());
        }
        let needle = id.as_bytes();
        // Parse only records whose bytes mention the id.
        let mut rest = &self.records[..];
        for _ in 0..self.count {
            let len = rest.get_u32_le() as usize;
            let json = &rest[..len];
            if json.windows(needle.len()).any(|w| w == needle) {
                let v: StoredVersion =
                    serde_json::from_slice(json).map_err(|e| corrupt().with_source(e))?;
                if v.version_id == id {
                    return Ok(Some(v));
                }
            }
            rest = &rest[len..];
        }
        Ok(None)
    }

    /// A manifest holding exactly `versions` (newest first) and `history_pages` (used when
    /// every record is rewritten, as re-encryption does).
    pub(crate) fn from_versions(
        versions: &[StoredVersion],
        history_pages: Vec<String>,
    ) -> Result<HeadManifest> {
        let mut records = BytesMut::new();
        for v in versions {
            put_record(&mut records, v)?;
        }
        Ok(HeadManifest {
            purged: false,
            history_pages,
            current: versions.first().cloned(),
            count: versions.len(),
            records: records.freeze(),
        })
    }

    /// The manifest after committing `version` on top of `prior` (ignored when purged). When the
    /// head grows past [`MAX_HEAD_VERSIONS`], the oldest records move to a page with `page_id`,
    /// whose encoded bytes are returned too.
    pub(crate) fn with_new(
        prior: Option<&HeadManifest>,
        version: &StoredVersion,
        page_id: impl FnOnce() -> String,
    ) -> Result<(HeadManifest, Option<(String, Bytes)>)> {
        let prior = prior.filter(|m| !m.purged);
        let (old_records, old_count, mut pages) = match prior {
            Some(m) => (&m.records[..], m.count, m.history_pages.clone()),
            None => (&[][..], 0, Vec::new()),
        };
        let mut count = old_count + 1;
        let mut keep = old_records.len();
        let mut spilled = None;
        if count > MAX_HEAD_VERSIONS {
            let kept = old_count - SPILL_VERSIONS;
            keep = records_len(old_records, kept)?;
            let mut page = BytesMut::with_capacity(8 + old_records.len() - keep);
            page.put_slice(PAGE_MAGIC);
            page.put_u32_le(SPILL_VERSIONS as u32);
            page.put_slice(&old_records[keep..]);
            let id = page_id();
            pages.insert(0, id.clone());
            spilled = Some((id, page.freeze()));
            count = kept + 1;
        }
        let mut records = BytesMut::with_capacity(keep + 512);
        put_record(&mut records, version)?;
        records.put_slice(&old_records[..keep]);
        let manifest = HeadManifest {
            purged: false,
            history_pages: pages,
            current: Some(version.clone()),
            count,
            records: records.freeze(),
        };
        Ok((manifest, spilled))
    }
}

pub(crate) fn encode(manifest: &HeadManifest, inline: Option<&[u8]>) -> Result<Bytes> {
    let pages = serde_json::to_vec(&manifest.history_pages)
        .map_err(|e| Error::consistency("cannot encode head manifest").with_source(e))?;
    let mut out = BytesMut::with_capacity(
        14 + pages.len() + manifest.records.len() + inline.map_or(0, <[u8]>::len),
    );
    out.put_slice(MAGIC);
    out.put_u8(if manifest.purged { FLAG_PURGED } else { 0 });
    out.put_u32_le(manifest.count as u32);
    out.put_u32_le(pages.len() as u32);
    out.put_slice(&pages);
    out.put_slice(&manifest.records);
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
    if bytes.len() < 14 || &bytes[..4] != MAGIC {
        return Err(corrupt());
    }
    let flags = bytes[4];
    if flags & !FLAG_PURGED != 0 {
        return Err(corrupt());
    }
    let count = u32::from_le_bytes(bytes[5..9].try_into().expect("4 bytes")) as usize;
    let pages_len = u32::from_le_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
    let pages_end = 13usize
        .checked_add(pages_len)
        .filter(|&e| e < bytes.len())
        .ok_or_else(corrupt)?;
    let history_pages: Vec<String> =
        serde_json::from_slice(&bytes[13..pages_end]).map_err(|e| corrupt().with_source(e))?;
    let records_end = pages_end + records_len(&bytes[pages_end..], count)?;
    if records_end >= bytes.len() {
        return Err(corrupt());
    }
    let records = bytes.slice(pages_end..records_end);
    let current = match count {
        0 => None,
        _ => {
            let first = records_len(&records, 1)?;
            Some(
                serde_json::from_slice::<StoredVersion>(&records[4..first])
                    .map_err(|e| corrupt().with_source(e))?,
            )
        }
    };
    let inline = match bytes[records_end] {
        0 if bytes.len() == records_end + 1 => None,
        1 => Some(bytes.slice(records_end + 1..)),
        _ => return Err(corrupt()),
    };
    match (&inline, &current) {
        (Some(body), Some(cur)) if body.len() as u64 != cur.body_object_len() => {
            return Err(corrupt());
        }
        (Some(_), None) => return Err(corrupt()),
        _ => {}
    }
    let manifest = HeadManifest {
        purged: flags & FLAG_PURGED != 0,
        history_pages,
        current,
        count,
        records,
    };
    Ok((manifest, inline))
}

/// Encodes a history page of `versions`, newest first.
pub(crate) fn encode_page(versions: &[StoredVersion]) -> Result<Bytes> {
    let mut page = BytesMut::new();
    page.put_slice(PAGE_MAGIC);
    page.put_u32_le(versions.len() as u32);
    for v in versions {
        put_record(&mut page, v)?;
    }
    Ok(page.freeze())
}

pub(crate) fn decode_page(bytes: &[u8]) -> Result<Vec<StoredVersion>> {
    let bad = || Error::consistency("history page is corrupt");
    if bytes.len() < 8 || &bytes[..4] != PAGE_MAGIC {
        return Err(bad());
    }
    let count = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    parse_records(&bytes[8..], count).map_err(|e| bad().with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in body header (only its length matters here).
    const HEADER: usize = 80;

    /// Stand-in encrypted body object of a `size`-byte body: header and chunks.
    fn inline_of(size: u64) -> Vec<u8> {
        vec![7; HEADER + sanctum_crypto::ciphertext_len(size) as usize]
    }

    fn version(id: &str, size: u64) -> StoredVersion {
        StoredVersion {
            version_id: id.into(),
            body_id: Some(format!("b{id}")),
            size,
            created_at_ms: 1,
            body_created_at_ms: 1,
            tombstone: false,
            restored_from: None,
            body_header: Some("00".repeat(HEADER)),
            sealed: None,
            seq: 0,
            lineage: None,
            combined_len: None,
            body_deferred: false,
            prev: None,
            tag: None,
        }
    }

    #[test]
    fn round_trip_with_and_without_inline() {
        let (m, _) = HeadManifest::with_new(None, &version("v1", 3), || unreachable!()).unwrap();
        let (m, _) =
            HeadManifest::with_new(Some(&m), &version("v2", 3), || unreachable!()).unwrap();
        let body = inline_of(3);
        let (back, inline) = decode(encode(&m, Some(&body)).unwrap()).unwrap();
        assert_eq!(back.live().unwrap().version_id, "v2");
        let ids: Vec<_> = back
            .versions()
            .unwrap()
            .into_iter()
            .map(|v| v.version_id)
            .collect();
        assert_eq!(ids, ["v2", "v1"]);
        assert_eq!(back.find("v1").unwrap().unwrap().version_id, "v1");
        assert!(back.find("v3").unwrap().is_none());
        assert_eq!(inline.as_deref(), Some(&body[..]));
        let (_, inline) = decode(encode(&m, None).unwrap()).unwrap();
        assert!(inline.is_none());
        let (purged, _) = decode(encode(&HeadManifest::purged_marker(), None).unwrap()).unwrap();
        assert!(purged.purged && purged.is_empty() && purged.live().is_none());
    }

    #[test]
    fn spills_the_oldest_records_into_a_page() {
        let mut m: Option<HeadManifest> = None;
        let mut spilled = Vec::new();
        for i in 0..=MAX_HEAD_VERSIONS {
            let (next, page) =
                HeadManifest::with_new(m.as_ref(), &version(&format!("v{i}"), 1), || "p1".into())
                    .unwrap();
            spilled.extend(page);
            m = Some(next);
        }
        let m = m.unwrap();
        assert_eq!(spilled.len(), 1);
        assert_eq!(m.history_pages, ["p1"]);
        let head: Vec<_> = m.versions().unwrap();
        assert_eq!(head.len(), MAX_HEAD_VERSIONS + 1 - SPILL_VERSIONS);
        assert_eq!(
            head.last().unwrap().version_id,
            format!("v{}", SPILL_VERSIONS)
        );
        let page = decode_page(&spilled[0].1).unwrap();
        assert_eq!(page.len(), SPILL_VERSIONS);
        assert_eq!(page[0].version_id, format!("v{}", SPILL_VERSIONS - 1));
        assert_eq!(page.last().unwrap().version_id, "v0");
    }

    #[test]
    fn corrupt_heads_are_consistency_errors() {
        let (m, _) = HeadManifest::with_new(None, &version("v1", 3), || unreachable!()).unwrap();
        let good = encode(&m, Some(&inline_of(3))).unwrap();
        let mut wrong_count = good.to_vec();
        wrong_count[5] = 9;
        let mut bad_flags = good.to_vec();
        bad_flags[4] = 0x80;
        for bad in [
            Bytes::from_static(b""),
            Bytes::from_static(b"XXXX\0\0\0\0\0\0\0\0\0\0"),
            good.slice(..good.len() - 1),
            Bytes::from([&good[..], b"d"].concat()),
            Bytes::from(wrong_count),
            Bytes::from(bad_flags),
            good.slice(..20),
        ] {
            let err = decode(bad).unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::Consistency);
        }
        assert!(decode_page(b"SNP1\x05\0\0\0").is_err());
        // A huge record count in stored bytes is an error, not a huge allocation.
        assert!(decode_page(b"SNP1\xff\xff\xff\xff").is_err());
    }
}
