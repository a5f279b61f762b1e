//! What of a version is sealed and how: the body and the caller's metadata are encrypted under
//! the namespace's data key, bound to tenant, namespace, key and body (or version) id.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::StoredVersion;
use crate::crypto::{NamespaceKeys, crypto_err};
use crate::error::{Error, ErrorCode, Result};
use crate::types::ObjectVersion;
use sanctum_crypto::{Context, Header};

use sanctum_crypto::kind::{BLOB_BODY as BODY_KIND, BLOB_META as META_KIND};

/// Marks metadata kept in the clear (benchmarks only).
const CLEAR: &str = "clear:";

/// The caller-given part of a version, stored encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Sealed {
    pub checksum: String,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// Where a version lives: the trusted half of every context.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Place<'a> {
    /// Benchmarks only: metadata is kept in the clear (`BlobSettings::plaintext_for_benchmarks`).
    pub clear: bool,
    pub tenant: &'a str,
    pub namespace: &'a str,
    pub key: &'a str,
}

impl<'a> Place<'a> {
    fn context(self, kind: &'a str, id: &'a str) -> Context<'a> {
        Context {
            tenant: self.tenant,
            namespace: self.namespace,
            object_key: self.key,
            body_id: id,
            kind,
        }
    }

    /// The context of body `body_id`.
    pub(crate) fn body(self, body_id: &'a str) -> Context<'a> {
        self.context(BODY_KIND, body_id)
    }

    /// The context of the sealed metadata of version `version_id`.
    pub(crate) fn meta(self, version_id: &'a str) -> Context<'a> {
        self.context(META_KIND, version_id)
    }
}

pub(crate) use crate::hex::encode as hex;

fn unhex(s: &str, what: &'static str) -> Result<Vec<u8>> {
    crate::hex::decode(s).ok_or_else(|| Error::consistency(format!("{what} is corrupt")))
}

/// Encrypts the caller-given part of version `version_id` with the namespace's current key.
pub(crate) fn seal(
    keys: &NamespaceKeys,
    place: Place<'_>,
    version_id: &str,
    sealed: &Sealed,
) -> Result<String> {
    let json = serde_json::to_vec(sealed)
        .map_err(|e| Error::consistency("cannot encode metadata").with_source(e))?;
    if place.clear {
        return Ok(format!("{CLEAR}{}", hex(&json)));
    }
    let (key_ref, key) = keys.current();
    let message = sanctum_crypto::encrypt(key, key_ref, &place.meta(version_id), &json)
        .map_err(crypto_err)?;
    Ok(hex(&message))
}

/// Decrypts the sealed part of `version`.
pub(crate) fn unseal(
    keys: &NamespaceKeys,
    place: Place<'_>,
    version: &StoredVersion,
) -> Result<Sealed> {
    let sealed = version
        .sealed
        .as_deref()
        .ok_or_else(|| Error::consistency("a version lacks its sealed metadata"))?;
    if place.clear {
        let json = unhex(
            sealed.strip_prefix(CLEAR).unwrap_or_default(),
            "clear metadata",
        )?;
        return serde_json::from_slice(&json)
            .map_err(|e| Error::consistency("clear metadata is malformed").with_source(e));
    }
    // A normal facade never accepts clear metadata: `CLEAR` is not hex, so it fails here.
    let message = unhex(sealed, "sealed metadata")?;
    let (header, header_len) = Header::parse(&message).map_err(crypto_err)?;
    let key = keys.key_for(&header.key_ref)?;
    let meta = place.meta(&version.version_id);
    let json =
        sanctum_crypto::decrypt(key, &header, header_len, &meta, &message).map_err(crypto_err)?;
    serde_json::from_slice(&json).map_err(|e| {
        Error::new(ErrorCode::Encryption, "sealed metadata is malformed").with_source(e)
    })
}

/// The parsed body header of `version`, and its bytes.
pub(crate) fn body_header(version: &StoredVersion) -> Result<(Header, Vec<u8>)> {
    let hex = version
        .body_header
        .as_deref()
        .ok_or_else(|| Error::consistency("a version lacks its body header"))?;
    let bytes = unhex(hex, "body header")?;
    let (header, len) = Header::parse(&bytes).map_err(crypto_err)?;
    if len != bytes.len() {
        return Err(Error::consistency("body header is corrupt"));
    }
    Ok((header, bytes))
}

/// The caller's view of a stored version (unsealing its metadata).
pub(crate) fn public(
    keys: Option<&NamespaceKeys>,
    place: Place<'_>,
    version: &StoredVersion,
) -> Result<ObjectVersion> {
    let sealed = match (version.tombstone, keys) {
        (true, _) => Sealed {
            checksum: String::new(),
            content_type: None,
            metadata: BTreeMap::new(),
        },
        (false, Some(keys)) => unseal(keys, place, version)?,
        (false, None) => {
            return Err(Error::new(
                ErrorCode::Encryption,
                "no keys to read this version",
            ));
        }
    };
    Ok(with_sealed(version, sealed))
}

/// The caller's view of `version` whose sealed part is `sealed` (already known, so nothing is
/// decrypted).
pub(crate) fn with_sealed(version: &StoredVersion, sealed: Sealed) -> ObjectVersion {
    ObjectVersion {
        version_id: version.version_id.clone(),
        body_id: version.body_id.clone(),
        checksum: sealed.checksum,
        size: version.size,
        created_at_ms: version.created_at_ms,
        body_created_at_ms: version.body_created_at_ms,
        content_type: sealed.content_type,
        metadata: sealed.metadata,
        tombstone: version.tombstone,
        restored_from: version.restored_from.clone(),
    }
}
