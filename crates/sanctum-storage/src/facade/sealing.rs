//! What of a version is sealed and how: the body and the caller's metadata are encrypted under
//! the namespace's data key, bound to tenant, namespace, key and body (or version) id; every
//! version record is authenticated as a whole and chained to the one before it.
//!
//! The chain: each record carries `seq` (1 for a key's oldest), `lineage` (the oldest's id),
//! `prev` (the next older record's tag) and `tag`, a MAC over all of its fields and the key's
//! place, under a key derived from the tenant key. So the backend cannot edit a field (a body
//! id, a size, the tombstone flag, a time), move a record to another key, or drop or reorder
//! older records, without the read failing. Dropping the newest records (a rollback of the whole
//! head) is caught by a process that saw them (the high-water mark), not by a fresh one.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::manifest::StoredVersion;
use crate::crypto::integrity::{HighWater, Mark, Seen};
use crate::crypto::{NamespaceKeys, crypto_err};
use crate::error::{Error, ErrorCode, Result};
use crate::types::ObjectVersion;
use sanctum_crypto::{Context, Header};

use sanctum_crypto::kind::{
    BLOB_BODY as BODY_KIND, BLOB_META as META_KIND, BLOB_SMALL as SMALL_KIND,
};

/// Bodies up to this many bytes that arrive in one buffer are sealed with their metadata as one
/// message ([`seal_small`]): a read of the version then derives one message key, not two.
pub(crate) const SMALL_MAX: u64 = 16 * 1024;

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

    /// The context of the combined message (metadata and body) with body id `body_id`.
    pub(crate) fn small(self, body_id: &'a str) -> Context<'a> {
        self.context(SMALL_KIND, body_id)
    }
}

/// The plaintext of a combined message: the metadata's JSON length (u32, big-endian), the
/// metadata JSON, then the body.
fn small_plaintext(sealed: &Sealed, body: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    let json = serde_json::to_vec(sealed)
        .map_err(|e| Error::consistency("cannot encode metadata").with_source(e))?;
    let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(4 + json.len() + body.len()));
    plain.extend_from_slice(&(json.len() as u32).to_be_bytes());
    plain.extend_from_slice(&json);
    plain.extend_from_slice(body);
    Ok(plain)
}

/// The header of the body message `version` names, its length and the body id, after checking
/// that `message` (the stored bytes) starts with exactly that header.
fn named_message<'v>(
    version: &'v StoredVersion,
    message: &[u8],
) -> Result<(Header, usize, &'v str)> {
    let (header, header_bytes) = body_header(version)?;
    if message.get(..header_bytes.len()) != Some(&header_bytes[..]) {
        return Err(Error::consistency(
            "the stored message is not the one the version names",
        ));
    }
    let body_id = version
        .body_id
        .as_deref()
        .ok_or_else(|| Error::consistency("version without a body"))?;
    Ok((header, header_bytes.len(), body_id))
}

/// A combined message just sealed: its bytes, its header (hex, for the version record) and its
/// plaintext length (`StoredVersion::combined_len`).
pub(crate) struct SmallMessage {
    pub message: Bytes,
    pub header: String,
    pub plaintext_len: u64,
}

/// Seals a small version's metadata and body as one message, bound to its body id (so a
/// restore can reuse it, as for a plain body).
pub(crate) fn seal_small(
    keys: &NamespaceKeys,
    place: Place<'_>,
    body_id: &str,
    sealed: &Sealed,
    body: &[u8],
) -> Result<SmallMessage> {
    let plain = small_plaintext(sealed, body)?;
    let (key_ref, key) = keys.current();
    let message = sanctum_crypto::encrypt_with_suite(
        keys.suite(),
        key,
        key_ref,
        &place.small(body_id),
        &plain,
    )
    .map_err(crypto_err)?;
    let (_, header_len) = Header::parse(&message).map_err(crypto_err)?;
    Ok(SmallMessage {
        header: hex(&message[..header_len]),
        plaintext_len: plain.len() as u64,
        message: Bytes::from(message),
    })
}

/// Opens the combined message of `version` (whose record was authenticated): its metadata and
/// body. The message's header must be the one the record names.
pub(crate) fn open_small(
    keys: &NamespaceKeys,
    place: Place<'_>,
    version: &StoredVersion,
    message: &[u8],
) -> Result<(Sealed, Bytes)> {
    let (header, header_len, body_id) = named_message(version, message)?;
    let key = keys.key_for(&header.key_ref)?;
    let plain = zeroize::Zeroizing::new(
        sanctum_crypto::decrypt(key, &header, header_len, &place.small(body_id), message)
            .map_err(crypto_err)?,
    );
    let bad = || Error::new(ErrorCode::Encryption, "a combined message is malformed");
    let json_len = plain
        .get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(bad)?;
    let json = plain.get(4..4 + json_len).ok_or_else(bad)?;
    let sealed: Sealed = serde_json::from_slice(json).map_err(|e| bad().with_source(e))?;
    let body = Bytes::copy_from_slice(&plain[4 + json_len..]);
    if body.len() as u64 != version.size || Some(plain.len() as u64) != version.combined_len {
        return Err(Error::consistency(
            "body size differs from the version's size",
        ));
    }
    Ok((sealed, body))
}

/// The body of `version`, a plain body message held whole in `message` (small bodies only).
pub(crate) fn open_plain_body(
    keys: &NamespaceKeys,
    place: Place<'_>,
    version: &StoredVersion,
    message: &[u8],
) -> Result<Bytes> {
    let (header, header_len, body_id) = named_message(version, message)?;
    let key = keys.key_for(&header.key_ref)?;
    let plain = sanctum_crypto::decrypt(key, &header, header_len, &place.body(body_id), message)
        .map_err(crypto_err)?;
    if plain.len() as u64 != version.size {
        return Err(Error::consistency(
            "body size differs from the version's size",
        ));
    }
    Ok(Bytes::from(plain))
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
    let message = sanctum_crypto::encrypt_with_suite(
        keys.suite(),
        key,
        key_ref,
        &place.meta(version_id),
        &json,
    )
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

/// The caller's view of a stored version: its record authenticated, its metadata unsealed.
pub(crate) fn public(
    keys: &NamespaceKeys,
    place: Place<'_>,
    version: &StoredVersion,
) -> Result<ObjectVersion> {
    verify(keys, place, version)?;
    let sealed = match version.tombstone {
        true => Sealed::empty(),
        false => unseal(keys, place, version)?,
    };
    Ok(with_sealed(version, sealed))
}

impl Sealed {
    /// What a tombstone carries: nothing.
    pub(crate) fn empty() -> Self {
        Sealed {
            checksum: String::new(),
            content_type: None,
            metadata: BTreeMap::new(),
        }
    }
}

/// What a version record's tag covers: the key's place and the record without its tag.
fn signed_bytes(version: &StoredVersion) -> Result<Vec<u8>> {
    let mut unsigned = version.clone();
    unsigned.tag = None;
    serde_json::to_vec(&unsigned)
        .map_err(|e| Error::consistency("cannot encode a version").with_source(e))
}

const RECORD_LABEL: &[u8] = b"version-record/v1";

/// Chains `version` onto `prior` (the key's newest record, or `None` for a new chain) and tags
/// it. Overwrites `seq`, `lineage`, `prev` and `tag`.
pub(crate) fn link(
    keys: &NamespaceKeys,
    place: Place<'_>,
    version: &mut StoredVersion,
    prior: Option<&StoredVersion>,
) -> Result<()> {
    // An untagged prior (written before authentication) starts a new chain.
    let prior = prior.filter(|p| p.tag.is_some());
    version.seq = prior.map_or(1, |p| p.seq + 1);
    version.lineage = Some(match prior.and_then(|p| p.lineage.clone()) {
        Some(lineage) => lineage,
        None => version.version_id.clone(),
    });
    version.prev = prior.and_then(|p| p.tag.clone());
    version.tag = None;
    let bytes = signed_bytes(version)?;
    version.tag = Some(keys.tag_version(&[RECORD_LABEL, place.key.as_bytes(), &bytes]));
    Ok(())
}

fn forged(what: &str) -> Error {
    Error::new(
        ErrorCode::Encryption,
        format!("{what}: the key's history was changed outside sanctum"),
    )
}

/// Authenticates one version record. An untagged record is accepted only in a namespace whose
/// records predate authentication and have not all been tagged yet (`keys reencrypt`).
pub(crate) fn verify(
    keys: &NamespaceKeys,
    place: Place<'_>,
    version: &StoredVersion,
) -> Result<()> {
    let Some(tag) = &version.tag else {
        if keys.legacy_manifests() && version.seq == 0 && version.prev.is_none() {
            return Ok(());
        }
        return Err(forged("a version record is not authenticated"));
    };
    let bytes = signed_bytes(version)?;
    if !keys.verify_version(&[RECORD_LABEL, place.key.as_bytes(), &bytes], tag) {
        return Err(forged(&format!(
            "version {} failed authentication",
            version.version_id
        )));
    }
    Ok(())
}

/// Authenticates a key's whole history (`versions` newest first, head then pages): every record,
/// and every link, so that no record was dropped, reordered or moved from another chain.
pub(crate) fn verify_chain(
    keys: &NamespaceKeys,
    place: Place<'_>,
    versions: &[StoredVersion],
) -> Result<()> {
    for v in versions {
        verify(keys, place, v)?;
    }
    for pair in versions.windows(2) {
        let (newer, older) = (&pair[0], &pair[1]);
        let linked = match (&newer.tag, &older.tag) {
            (Some(_), Some(older_tag)) => {
                newer.prev.as_ref() == Some(older_tag)
                    && newer.seq == older.seq + 1
                    && newer.lineage == older.lineage
            }
            // The first tagged record on top of untagged (older) ones starts the chain.
            (Some(_), None) => newer.prev.is_none() && newer.seq == 1,
            // Nothing untagged is written after authentication existed.
            (None, Some(_)) => false,
            (None, None) => true,
        };
        if !linked {
            return Err(forged(&format!(
                "version {} does not follow version {}",
                newer.version_id, older.version_id
            )));
        }
    }
    // The oldest tagged record must start its chain: otherwise older ones were dropped.
    if let Some(oldest) = versions.last()
        && oldest.tag.is_some()
        && (oldest.seq != 1 || oldest.prev.is_some())
    {
        return Err(forged(&format!(
            "the history of the key ends at version {}, which is not the first",
            oldest.version_id
        )));
    }
    Ok(())
}

/// The high-water mark name of a key's version chain.
fn chain_mark(place: Place<'_>) -> String {
    format!(
        "t/{}/n/{}/k/{}",
        place.tenant,
        place.namespace,
        crate::hex::encode(place.key.as_bytes())
    )
}

/// The mark of the key's chain now: take it before reading the head.
pub(crate) fn mark_before(high_water: &HighWater, place: Place<'_>) -> Option<Mark> {
    high_water.mark(&chain_mark(place))
}

/// Refuses a head whose newest record is older than one this process had seen of the same
/// chain before it read the head (`before`, from [`mark_before`]): the backend served an older
/// head. Remembers the newest.
pub(crate) fn check_fresh(
    high_water: &HighWater,
    place: Place<'_>,
    before: Option<&Mark>,
    current: Option<&StoredVersion>,
) -> Result<()> {
    let Some((current, lineage)) = current.and_then(|c| c.lineage.as_deref().map(|l| (c, l)))
    else {
        return Ok(());
    };
    match high_water.observe(&chain_mark(place), before, lineage, current.seq) {
        Seen::Fresh => Ok(()),
        Seen::RolledBack { seen } => Err(Error::new(
            ErrorCode::Encryption,
            format!(
                "the head of the key was rolled back: its newest version is number {} of its \
                 history, and this process has seen number {seen}",
                current.seq
            ),
        )),
    }
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
