//! Authentication of what the backend keeps in the clear: namespace key records and version
//! records (chained per key), and the per-process high-water marks that catch a rollback to an
//! older authentic state.
//!
//! The MAC keys derive from the tenant key, never from a data-key epoch, so retiring an epoch
//! never makes a key record or a version history unverifiable. The backend never holds the
//! tenant key in the clear (it is wrapped by the KEK), so it cannot forge a tag.

use std::collections::HashMap;
use std::sync::Mutex;

use zeroize::Zeroizing;

use sanctum_crypto::DataKey;

/// The BLAKE3 `derive_key` context of every authentication key (fixed forever).
const AUTH_KDF_CONTEXT: &str = "sanctum-storage 2026-12-05 record authentication key";

/// What an authentication key protects; part of its derivation, so one never verifies another's
/// records.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// A namespace's key record (`k/<tenant>/n/<ns>`).
    KeyRecord,
    /// The version records of a namespace's heads and history pages.
    VersionRecords,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::KeyRecord => "namespace-key-record",
            Purpose::VersionRecords => "version-records",
        }
    }
}

/// A MAC key (BLAKE3 keyed mode) of one tenant, namespace and purpose. Wiped on drop, and so
/// is every hasher that held it (blake3's `zeroize` feature).
pub(crate) struct AuthKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthKey(..)")
    }
}

/// Feeds `part` length-prefixed, so that no two lists of parts hash the same input.
fn update_framed(hasher: &mut blake3::Hasher, part: &[u8]) {
    hasher.update(&(part.len() as u64).to_be_bytes());
    hasher.update(part);
}

impl AuthKey {
    /// The key for `purpose` in namespace `ns` of `tenant`, derived from the tenant key.
    pub(crate) fn derive(tenant_key: &DataKey, purpose: Purpose, tenant: &str, ns: &str) -> Self {
        let mut hasher = blake3::Hasher::new_derive_key(AUTH_KDF_CONTEXT);
        hasher.update(tenant_key.as_bytes());
        for part in [purpose.label(), tenant, ns] {
            update_framed(&mut hasher, part.as_bytes());
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hasher.finalize_xof().fill(&mut key[..]);
        zeroize::Zeroize::zeroize(&mut hasher);
        AuthKey(key)
    }

    /// The tag of `parts` (each length-prefixed), in hex.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        for part in parts {
            update_framed(&mut hasher, part);
        }
        let tag = hasher.finalize();
        zeroize::Zeroize::zeroize(&mut hasher);
        tag.to_hex().to_string()
    }

    /// Whether `tag` (hex) is the tag of `parts`. The comparison takes the same time wherever
    /// the tags differ.
    pub(crate) fn verify(&self, parts: &[&[u8]], tag: &str) -> bool {
        let Ok(given) = blake3::Hash::from_hex(tag) else {
            return false;
        };
        let expected = blake3::Hash::from_hex(self.tag(parts)).expect("our own hex");
        // `blake3::Hash`'s equality is constant-time.
        expected == given
    }
}

/// How many marks a process keeps before it forgets them all (bounds memory; forgetting only
/// weakens rollback detection, never correctness).
const MAX_MARKS: usize = 100_000;

/// Per-process high-water marks: the newest authentic state this process has seen of each
/// mutable record (a namespace key record, a key's version chain). A fresh process has no
/// marks: see docs/encryption.md.
///
/// A read is compared with the mark as it was *before* the read was sent ([`mark`](Self::mark)),
/// never with one a concurrent write of this process set while the read was in flight: a read
/// that was answered before that write is stale, not rolled back.
#[derive(Debug, Default)]
pub(crate) struct HighWater {
    marks: Mutex<HashMap<String, Mark>>,
}

/// The newest state seen of one record: its lineage and sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mark {
    lineage: String,
    seq: u64,
}

/// What [`HighWater::observe`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Seen {
    /// As new as, or newer than, anything seen before the read.
    Fresh,
    /// Older than a state this process had seen before it read: the backend rolled the record
    /// back.
    RolledBack {
        /// The newest sequence number seen before.
        seen: u64,
    },
}

impl HighWater {
    /// The mark of `what` now: take it before reading the record.
    pub(crate) fn mark(&self, what: &str) -> Option<Mark> {
        self.marks
            .lock()
            .expect("high-water marks poisoned")
            .get(what)
            .cloned()
    }

    /// Records that `what` was read (or written) at `seq` within `lineage` (records of another
    /// lineage, such as a key created again after a purge, are not compared), and says whether
    /// that is older than `before`, the mark taken before the read.
    pub(crate) fn observe(
        &self,
        what: &str,
        before: Option<&Mark>,
        lineage: &str,
        seq: u64,
    ) -> Seen {
        if let Some(before) = before
            && before.lineage == lineage
            && seq < before.seq
        {
            return Seen::RolledBack { seen: before.seq };
        }
        let mut marks = self.marks.lock().expect("high-water marks poisoned");
        match marks.get_mut(what) {
            Some(mark) if mark.lineage == lineage => mark.seq = mark.seq.max(seq),
            _ => {
                if marks.len() >= MAX_MARKS {
                    marks.clear();
                }
                marks.insert(
                    what.to_string(),
                    Mark {
                        lineage: lineage.to_string(),
                        seq,
                    },
                );
            }
        }
        Seen::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8, purpose: Purpose, ns: &str) -> AuthKey {
        AuthKey::derive(&DataKey::from_bytes([byte; 32]), purpose, "t", ns)
    }

    #[test]
    fn tags_depend_on_key_purpose_namespace_and_framing() {
        let a = key(1, Purpose::VersionRecords, "docs");
        let tag = a.tag(&[b"ab", b"c"]);
        assert!(a.verify(&[b"ab", b"c"], &tag));
        assert!(!a.verify(&[b"a", b"bc"], &tag), "framing");
        assert!(!key(2, Purpose::VersionRecords, "docs").verify(&[b"ab", b"c"], &tag));
        assert!(!key(1, Purpose::KeyRecord, "docs").verify(&[b"ab", b"c"], &tag));
        assert!(!key(1, Purpose::VersionRecords, "doc").verify(&[b"ab", b"c"], &tag));
        assert!(!a.verify(&[b"ab", b"c"], "not hex"));
        let mut flipped = tag.into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        assert!(!a.verify(&[b"ab", b"c"], std::str::from_utf8(&flipped).unwrap()));
    }

    #[test]
    fn high_water_marks_catch_rollbacks_within_a_lineage() {
        let marks = HighWater::default();
        assert_eq!(marks.observe("k", None, "l1", 3), Seen::Fresh);
        let before = marks.mark("k");
        assert_eq!(marks.observe("k", before.as_ref(), "l1", 3), Seen::Fresh);
        assert_eq!(
            marks.observe("k", before.as_ref(), "l1", 2),
            Seen::RolledBack { seen: 3 }
        );
        assert_eq!(marks.observe("k", before.as_ref(), "l1", 4), Seen::Fresh);
        // A stale read sent before a newer write of this process is not a rollback.
        let sent = marks.mark("k");
        assert_eq!(marks.observe("k", None, "l1", 9), Seen::Fresh);
        assert_eq!(marks.observe("k", sent.as_ref(), "l1", 4), Seen::Fresh);
        assert_eq!(marks.mark("k").unwrap().seq, 9, "marks never go back");
        // A new lineage (the key created again) starts over.
        let before = marks.mark("k");
        assert_eq!(marks.observe("k", before.as_ref(), "l2", 1), Seen::Fresh);
        assert_eq!(marks.observe("other", None, "l1", 1), Seen::Fresh);
    }
}
