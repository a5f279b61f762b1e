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
        let bad = || Error::invalid("invalid range: expected START-END, START- or -SUFFIX");
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
                    return Err(bad());
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
}

/// The largest page a listing returns.
pub const MAX_LIST_LIMIT: usize = 1000;

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            prefix: String::new(),
            cursor: None,
            limit: MAX_LIST_LIMIT,
        }
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BlobList {
    /// Live objects (tombstoned keys are hidden), in key byte order.
    pub objects: Vec<StorageObject>,
    /// Pass this to get the next page; `None` on the last page.
    pub next_cursor: Option<String>,
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

const CURSOR_TAG: &str = "c1.";

/// Encodes a listing cursor: the last key scanned.
pub(crate) fn encode_cursor(key: &str) -> String {
    let hex = crate::hex::encode(key.as_bytes());
    format!("{CURSOR_TAG}{hex}")
}

/// Decodes a listing cursor into the key to continue after.
pub(crate) fn decode_cursor(cursor: &str) -> Result<String> {
    let bad = || Error::invalid("malformed list cursor");
    let hex = cursor.strip_prefix(CURSOR_TAG).ok_or_else(bad)?;
    let key = crate::hex::decode(hex)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(bad)?;
    crate::types::limits::validate_key(&key).map_err(|_| bad())?;
    Ok(key)
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
        assert_eq!(decode_cursor(&encode_cursor("a/b ü")).unwrap(), "a/b ü");
        for bad in ["", "c1.", "c1.zz", "c1.2e2e", "x1.61", "c1.2f61"] {
            assert!(decode_cursor(bad).is_err(), "{bad:?}");
        }
    }
}
