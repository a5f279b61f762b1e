//! Where the facade puts things in an adapter: one folder per tenant and namespace, and keys
//! encoded so that no key can form a path trick.
//!
//! ```text
//! t/<tenant>/n/<namespace>/h/<enc(key)>.k             head manifest of a key
//! t/<tenant>/n/<namespace>/b/<enc(key)>.k/<body id>   immutable bodies of a key
//! t/<tenant>/n/<namespace>/p/<enc(key)>.k/<page id>   immutable history pages of a key
//! ```
//!
//! `enc` is lower-case hex of the key's UTF-8, cut into 128-character segments. Hex keeps byte
//! order (so listings sort by key) and prefixes (so a key prefix is a path prefix), is safe on
//! case-insensitive file systems, and the `.k` suffix lets `a` and `a/b` both be keys.

use crate::adapters::BlobPath;
use crate::error::{Error, Result};
use crate::types::Namespace;

const SEGMENT: usize = 128;

/// Paths of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    base: String,
}

fn hex_segments(bytes: &[u8]) -> String {
    let hex = crate::hex::encode(bytes);
    let mut out = String::with_capacity(hex.len() + hex.len() / SEGMENT + 2);
    for (i, chunk) in hex.as_bytes().chunks(SEGMENT).enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(std::str::from_utf8(chunk).expect("hex is ASCII"));
    }
    out
}

impl Layout {
    pub(crate) fn new(ns: &Namespace) -> Self {
        Self {
            base: format!("t/{}/n/{}", ns.tenant(), ns.name()),
        }
    }

    /// The encoded key, as used in every path of the key.
    pub(crate) fn enc(key: &str) -> String {
        format!("{}.k", hex_segments(key.as_bytes()))
    }

    pub(crate) fn head(&self, key: &str) -> Result<BlobPath> {
        BlobPath::new(format!("{}/h/{}", self.base, Self::enc(key)))
    }

    pub(crate) fn head_of_enc(&self, enc: &str) -> Result<BlobPath> {
        BlobPath::new(format!("{}/h/{enc}", self.base))
    }

    pub(crate) fn body(&self, enc: &str, body_id: &str) -> Result<BlobPath> {
        BlobPath::new(format!("{}/b/{enc}/{body_id}", self.base))
    }

    pub(crate) fn page(&self, enc: &str, page_id: &str) -> Result<BlobPath> {
        BlobPath::new(format!("{}/p/{enc}/{page_id}", self.base))
    }

    /// The path prefix of every head whose key starts with `prefix`.
    pub(crate) fn head_prefix(&self, prefix: &str) -> String {
        format!("{}/h/{}", self.base, hex_segments(prefix.as_bytes()))
    }

    /// The path prefix of everything in the namespace.
    pub(crate) fn namespace_prefix(&self) -> String {
        format!("{}/", self.base)
    }

    /// The path prefix of a kind of object (`b` bodies, `p` pages) across all keys.
    pub(crate) fn kind_prefix(&self, kind: char) -> String {
        format!("{}/{kind}/", self.base)
    }

    /// Splits `<base>/<kind>/<enc>/<id>` into `(enc, id)`.
    pub(crate) fn split_owned<'a>(&self, kind: char, path: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = path
            .strip_prefix(&self.base)?
            .strip_prefix('/')?
            .strip_prefix(kind)?
            .strip_prefix('/')?;
        rest.rsplit_once('/')
    }

    /// The key a head path belongs to.
    pub(crate) fn key_of_head(&self, path: &str) -> Result<String> {
        let bad = || Error::consistency("a head path in the namespace does not decode to a key");
        let enc = path
            .strip_prefix(&self.base)
            .and_then(|r| r.strip_prefix("/h/"))
            .and_then(|r| r.strip_suffix(".k"))
            .ok_or_else(bad)?;
        let bytes = crate::hex::decode(&enc.replace('/', "")).ok_or_else(bad)?;
        String::from_utf8(bytes).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TenantId;

    fn layout() -> Layout {
        Layout::new(&Namespace::new(&TenantId::new("acme").unwrap(), "docs").unwrap())
    }

    #[test]
    fn keys_round_trip_and_prefixes_match() {
        let l = layout();
        for key in [
            "a",
            "a/b",
            "ünï/cødé",
            &"x".repeat(1024),
            "../../etc/passwd",
        ] {
            let head = l.head(key).unwrap();
            assert!(head.as_str().starts_with("t/acme/n/docs/h/"));
            assert!(
                head.as_str()
                    .starts_with(&l.head_prefix(&key[..key.len() / 2]))
            );
            assert_eq!(l.key_of_head(head.as_str()).unwrap(), key);
        }
        assert_ne!(l.head("a").unwrap(), l.head("A").unwrap());
    }

    #[test]
    fn path_order_follows_key_order() {
        let l = layout();
        let (k70, k64) = ("k".repeat(70), "k".repeat(64));
        let mut keys = vec!["b", "a", "a/b", "a-b", "ab", "a\u{ff}", &k70, &k64];
        let mut by_path = keys.clone();
        by_path.sort_by_key(|k| l.head(k).unwrap());
        keys.sort();
        assert_eq!(keys, by_path);
    }
}
