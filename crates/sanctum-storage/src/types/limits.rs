//! Name, key and metadata limits, checked at the facade and the same for every backend.
//!
//! Validation is the first wall of tenancy: every id that becomes part of a storage path is
//! checked here, so nothing a caller passes can climb out of its tenant or namespace.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Longest tenant or namespace id, in bytes.
pub const MAX_ID_LEN: usize = 63;
/// Longest object key, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;
/// Largest total of user metadata (keys plus values), in bytes.
pub const MAX_METADATA_BYTES: usize = 2048;
/// Longest content type, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 256;
/// Longest actor id, in bytes.
pub const MAX_ACTOR_LEN: usize = 256;

/// Checks a tenant or namespace id: 1-63 of `[a-z0-9-]`, not starting or ending with `-`.
/// The error quotes the id (the caller's own input) and says what is wrong with it.
pub fn validate_id(kind: &str, id: &str) -> Result<()> {
    let why = if id.is_empty() {
        "it is empty".to_string()
    } else if id.len() > MAX_ID_LEN {
        format!("it is {} bytes long", id.len())
    } else if id.bytes().any(|b| b.is_ascii_uppercase()) {
        "uppercase letters are not allowed (use lowercase)".to_string()
    } else if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        format!("{c:?} is not allowed")
    } else if id.starts_with('-') || id.ends_with('-') {
        "it starts or ends with '-'".to_string()
    } else {
        return Ok(());
    };
    let shown: String = id.chars().take(MAX_ID_LEN + 1).collect();
    Err(Error::invalid(format!(
        "invalid {kind} id {shown:?}: {why}; an id is 1-{MAX_ID_LEN} characters of [a-z0-9-], not starting or ending with '-'"
    )))
}

/// Checks an actor (user or service) name: 1-256 bytes without control characters.
pub fn validate_actor(actor: &str) -> Result<()> {
    if actor.is_empty() || actor.len() > MAX_ACTOR_LEN || actor.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "invalid actor: must be 1-{MAX_ACTOR_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// Checks an object key: 1-1024 bytes of UTF-8, no control characters, no leading `/`, and no
/// empty, `.` or `..` segment.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(format!(
            "invalid key: must be 1-{MAX_KEY_LEN} bytes (got {})",
            key.len()
        )));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid(
            "invalid key: control characters are not allowed",
        ));
    }
    if key
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(Error::invalid(
            "invalid key: no leading '/', and no empty, '.' or '..' segment",
        ));
    }
    Ok(())
}

/// Checks a key prefix for listing: like a key, but may be empty and may end with `/`.
pub fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    validate_key(trimmed).map_err(|e| Error::invalid(e.message().replacen("key", "prefix", 1)))
}

/// Checks a content type: at most 256 bytes of printable ASCII.
pub fn validate_content_type(ct: &str) -> Result<()> {
    if ct.is_empty()
        || ct.len() > MAX_CONTENT_TYPE_LEN
        || !ct.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(Error::invalid(format!(
            "invalid content type: must be 1-{MAX_CONTENT_TYPE_LEN} bytes of printable ASCII"
        )));
    }
    Ok(())
}

/// Checks user metadata: keys of `[A-Za-z0-9._-]`, values without control characters, at most
/// 2 KiB in total. Messages name the offending key, never a value.
pub fn validate_metadata(meta: &BTreeMap<String, String>) -> Result<()> {
    let mut total = 0usize;
    for (k, v) in meta {
        let key_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !key_ok {
            return Err(Error::invalid(
                "invalid metadata key: must be non-empty [A-Za-z0-9._-]",
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(Error::invalid(format!(
                "invalid metadata value for key '{k}': control characters are not allowed"
            )));
        }
        total += k.len() + v.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err(Error::invalid(format!(
            "user metadata too large: {total} bytes, the limit is {MAX_METADATA_BYTES}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_at_and_past_limits() {
        assert!(validate_id("tenant", &"a".repeat(63)).is_ok());
        assert!(validate_id("tenant", &"a".repeat(64)).is_err());
        for bad in ["", "-a", "a-", "A", "a_b", "a/b", "..", "a b"] {
            assert!(validate_id("namespace", bad).is_err(), "{bad:?}");
        }
        assert!(validate_id("namespace", "a-1").is_ok());
    }

    #[test]
    fn keys() {
        assert!(validate_key(&"k".repeat(1024)).is_ok());
        assert!(validate_key(&"k".repeat(1025)).is_err());
        for bad in [
            "", "/a", "a/", "a//b", "./a", "a/./b", "../x", "a/..", "a\nb", "a\u{7f}",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        for good in ["a", "a/b", "a.b", "..a", "a..", "ünï/cødé", "a b"] {
            assert!(validate_key(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn metadata_limits() {
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), "v".repeat(2047));
        assert!(validate_metadata(&m).is_ok());
        m.insert("k".to_string(), "v".repeat(2048));
        assert!(validate_metadata(&m).is_err());
        let mut bad = BTreeMap::new();
        bad.insert("a b".to_string(), "v".to_string());
        assert!(validate_metadata(&bad).is_err());
    }

    #[test]
    fn content_type_limits() {
        assert!(validate_content_type(&"a".repeat(256)).is_ok());
        assert!(validate_content_type(&"a".repeat(257)).is_err());
        assert!(validate_content_type("text/plain\n").is_err());
    }
}
