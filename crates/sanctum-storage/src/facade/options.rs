//! Options and results of the blob facade.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use crate::adapters::ByteStream;
use crate::error::{Error, Result};
use crate::types::{ObjectVersion, StorageObject};

/// Options of [`BlobStore::put`](super::BlobStore::put).
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Write only if the current version is this one (else `Conflict`).
    pub if_match: Option<String>,
    /// Write only if the key does not exist (a tombstoned key does not exist).
    pub if_none_match: bool,
    /// The content type to store with the version.
    pub content_type: Option<String>,
    /// User metadata to store with the version (at most 2 KiB in total).
    pub metadata: BTreeMap<String, String>,
}

/// A byte range as in HTTP: inclusive, open-ended, or a suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// Bytes `first..=last`.
    Inclusive {
        /// First byte.
        first: u64,
        /// Last byte (clipped to the end of the object).
        last: u64,
    },
    /// From `first` to the end.
    From(u64),
    /// The last `n` bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Resolves the range against an object of `size` bytes into a half-open range.
    pub fn resolve(self, size: u64) -> Result<Range<u64>> {
        let unsatisfiable = || {
            Error::invalid(format!(
                "range {self} not satisfiable for an object of {size} bytes"
            ))
        };
        match self {
            ByteRange::Inclusive { first, last } if first <= last && first < size => {
                Ok(first..last.saturating_add(1).min(size))
            }
            ByteRange::From(first) if first < size => Ok(first..size),
            ByteRange::Suffix(n) if n > 0 && size > 0 => Ok(size.saturating_sub(n)..size),
            _ => Err(unsatisfiable()),
        }
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ByteRange::Inclusive { first, last } => write!(f, "{first}-{last}"),
            ByteRange::From(first) => write!(f, "{first}-"),
            ByteRange::Suffix(n) => write!(f, "-{n}"),
        }
    }
}

impl FromStr for ByteRange {
    type Err = Error;

    /// Parses `START-END`, `START-` or `-SUFFIX`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "invalid range {s:?}: expected START-END (inclusive), START- or -SUFFIX"
            ))
        };
        let num = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<u64>().map_err(|_| bad())
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        match (a.is_empty(), b.is_empty()) {
            (true, false) => Ok(ByteRange::Suffix(num(b)?)),
            (false, true) => Ok(ByteRange::From(num(a)?)),
            (false, false) => {
                let (first, last) = (num(a)?, num(b)?);
                if first > last {
                    return Err(Error::invalid(format!(
                        "invalid range {s}: its start ({first}) is after its end ({last}); \
                         START-END names bytes START to END inclusive"
                    )));
                }
                Ok(ByteRange::Inclusive { first, last })
            }
            (true, true) => Err(bad()),
        }
    }
}

/// Options of [`BlobStore::get`](super::BlobStore::get).
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    /// Read this version instead of the current one.
    pub version: Option<String>,
    /// Read only these bytes.
    pub range: Option<ByteRange>,
    /// Also re-hash a full read with BLAKE3 and end the stream with a `Consistency` error on a
    /// mismatch. Off by default: every chunk is already authenticated by AES-GCM, and the final
    /// chunk proves the body complete.
    pub verify_checksum: bool,
}

/// A blob being read: the version, the range of it in `body`, and the bytes.
///
/// A full read verifies the checksum as it streams: if the bytes do not match, the stream ends
/// with a `Consistency` error instead of ending cleanly.
pub struct BlobRead {
    /// The version being read.
    pub version: ObjectVersion,
    /// The byte range of the version that `body` holds.
    pub range: Range<u64>,
    /// The bytes.
    pub body: ByteStream,
}

impl fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobRead")
            .field("version", &self.version)
            .field("range", &self.range)
            .finish()
    }
}

/// Options of [`BlobStore::list`](super::BlobStore::list).
#[derive(Debug, Clone)]
pub struct ListOptions {
    /// Only keys starting with this.
    pub prefix: String,
    /// Continue after the page that returned this cursor.
    pub cursor: Option<String>,
    /// At most this many objects (1 to [`MAX_LIST_LIMIT`]).
    pub limit: usize,
    /// List past keys whose head manifest cannot be read or decoded, reporting each in
    /// [`BlobList::damaged`], instead of failing with `Consistency` on the first one.
    pub skip_damaged: bool,
}

/// The largest page a listing returns.
pub const MAX_LIST_LIMIT: usize = 1000;

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            cursor: None,
            limit: MAX_LIST_LIMIT,
            skip_damaged: false,
        }
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobList {
    /// Live objects (tombstoned keys are hidden), in key byte order.
    pub objects: Vec<StorageObject>,
    /// Pass this to get the next page; `None` on the last page. Opaque, and valid only for
    /// the same tenant and namespace.
    pub next_cursor: Option<String>,
    /// Keys skipped because their head manifest is damaged (only with
    /// [`ListOptions::skip_damaged`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<DamagedKey>,
}

/// A key a listing skipped because its head manifest is damaged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DamagedKey {
    /// The key.
    pub key: String,
    /// What is wrong with it (the error code's string and message).
    pub error: String,
}

/// What a sweep removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Bodies referenced by no version, older than the grace period.
    pub bodies_deleted: u64,
    /// History pages referenced by no head, older than the grace period.
    pub pages_deleted: u64,
    /// Files that interrupted writes left in the adapter (such as the local adapter's temp
    /// files), older than the grace period.
    pub temp_files_deleted: u64,
    /// Bytes freed: the stored sizes of the bodies and pages plus the sizes of the files.
    pub bytes_deleted: u64,
}

const CURSOR_TAG: &str = "c2.";
/// Bytes of the binding tag in a cursor.
const CURSOR_TAG_LEN: usize = 12;

/// The cursor key of a namespace: derived from its tenant and name, so a cursor from one
/// namespace or tenant never decodes in another. Not a secret: the binding stops mix-ups, and a
/// forged cursor can only name a starting point inside the caller's own namespace.
fn cursor_key(tenant: &str, namespace: &str) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("sanctum-storage 2026 list cursor v2");
    hasher.update(tenant.as_bytes());
    hasher.update(&[0]);
    hasher.update(namespace.as_bytes());
    *hasher.finalize().as_bytes()
}

/// XORs `bytes` with a keystream of the cursor key, so a cursor does not show the key.
fn mask(key: &[u8; 32], bytes: &mut [u8]) {
    let mut stream = blake3::Hasher::new_keyed(key);
    stream.update(b"mask");
    let mut pad = vec![0u8; bytes.len()];
    stream.finalize_xof().fill(&mut pad);
    bytes.iter_mut().zip(pad).for_each(|(b, p)| *b ^= p);
}

fn cursor_tag(key: &[u8; 32], plain: &[u8]) -> [u8; CURSOR_TAG_LEN] {
    let mut tag = [0u8; CURSOR_TAG_LEN];
    tag.copy_from_slice(&blake3::keyed_hash(key, plain).as_bytes()[..CURSOR_TAG_LEN]);
    tag
}

/// Encodes a listing cursor for `tenant`/`namespace`: the last key scanned, masked and bound.
pub(crate) fn encode_cursor(tenant: &str, namespace: &str, last_key: &str) -> String {
    let key = cursor_key(tenant, namespace);
    let mut bytes = cursor_tag(&key, last_key.as_bytes()).to_vec();
    let mut body = last_key.as_bytes().to_vec();
    mask(&key, &mut body);
    bytes.extend_from_slice(&body);
    format!("{CURSOR_TAG}{}", crate::hex::encode(&bytes))
}

/// Decodes a listing cursor of `tenant`/`namespace` into the key to continue after. A cursor
/// that is not one is `InvalidInput`; one made for another namespace or tenant is `NotFound`,
/// as every other name of another tenant is.
pub(crate) fn decode_cursor(tenant: &str, namespace: &str, cursor: &str) -> Result<String> {
    let bad = || Error::invalid("malformed list cursor: pass back a next_cursor exactly as given");
    let hex = cursor.strip_prefix(CURSOR_TAG).ok_or_else(bad)?;
    let bytes = crate::hex::decode(hex).ok_or_else(bad)?;
    if bytes.len() <= CURSOR_TAG_LEN {
        return Err(bad());
    }
    let key = cursor_key(tenant, namespace);
    let (tag, body) = bytes.split_at(CURSOR_TAG_LEN);
    let mut plain = body.to_vec();
    mask(&key, &mut plain);
    let expected = cursor_tag(&key, &plain);
    // Not a secret (see `cursor_key`), so a plain comparison is fine.
    if tag != expected {
        return Err(Error::not_found(format!(
            "no such list cursor in namespace '{namespace}' (a cursor works only in the namespace that returned it)"
        )));
    }
    let last_key = String::from_utf8(plain).map_err(|_| bad())?;
    crate::types::limits::validate_key(&last_key).map_err(|_| bad())?;
    Ok(last_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_resolve_like_http() {
        let r = |s: &str| s.parse::<ByteRange>().unwrap();
        assert_eq!(r("0-9").resolve(100).unwrap(), 0..10);
        assert_eq!(r("90-200").resolve(100).unwrap(), 90..100);
        assert_eq!(r("99-").resolve(100).unwrap(), 99..100);
        assert_eq!(r("-10").resolve(100).unwrap(), 90..100);
        assert_eq!(r("-500").resolve(100).unwrap(), 0..100);
        assert!(r("100-").resolve(100).is_err());
        assert!(r("-0").resolve(100).is_err());
        assert!(r("0-0").resolve(0).is_err());
        for bad in ["", "-", "a-b", "5-1", "1-2-3", " 1-2", "+1-2"] {
            assert!(bad.parse::<ByteRange>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor("acme", "docs", "a/b ü");
        assert_eq!(decode_cursor("acme", "docs", &c).unwrap(), "a/b ü");
        assert!(!c.contains(&crate::hex::encode("a/b ü".as_bytes())), "{c}");
        for bad in ["", "c2.", "c2.zz", "c2.2e2e", "x1.61", "c1.61", "c1.2f61"] {
            let err = decode_cursor("acme", "docs", bad).unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::InvalidInput, "{bad:?}");
        }
    }

    #[test]
    fn cursors_are_bound_to_tenant_and_namespace() {
        let c = encode_cursor("acme", "docs", "k");
        for (tenant, ns) in [("other", "docs"), ("acme", "other"), ("acmedocs", "")] {
            let err = decode_cursor(tenant, ns, &c).unwrap_err();
            assert_eq!(err.code(), crate::ErrorCode::NotFound, "{tenant}/{ns}");
        }
        // A flipped bit anywhere is caught.
        let mut bytes = crate::hex::decode(c.strip_prefix("c2.").unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("c2.{}", crate::hex::encode(&bytes));
        assert!(decode_cursor("acme", "docs", &tampered).is_err());
    }

    #[test]
    fn reversed_range_says_start_is_after_end() {
        let err = "200-100".parse::<ByteRange>().unwrap_err();
        assert!(
            err.message().contains("start (200) is after its end (100)"),
            "{err}"
        );
    }
}
