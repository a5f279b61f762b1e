//! Sealing record documents: one envelope message per version, whose context binds tenant,
//! namespace, collection, id, record version and schema version.

use sanctum_crypto::{Context, Header, kind};

use crate::adapters::record::RecordKey;
use crate::crypto::{NamespaceKeys, crypto_err};
use crate::error::{Error, ErrorCode, Result};

/// The context's object key (`collection/id`: collections hold no `/`) and body id
/// (`v<version>.s<schema>`).
fn names(key: &RecordKey, version: u64, schema_version: u32) -> (String, String) {
    (
        format!("{}/{}", key.collection, key.id),
        format!("v{version}.s{schema_version}"),
    )
}

/// Seals `plaintext` (the document's JSON) as version `version` of the record at `key`.
pub(super) fn seal(
    keys: &NamespaceKeys,
    key: &RecordKey,
    version: u64,
    schema_version: u32,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let (object_key, body_id) = names(key, version, schema_version);
    let ctx = Context {
        tenant: &key.tenant,
        namespace: &key.namespace,
        object_key: &object_key,
        body_id: &body_id,
        kind: kind::RECORD,
    };
    let (key_ref, data_key) = keys.current();
    sanctum_crypto::encrypt_with_suite(keys.suite(), data_key, key_ref, &ctx, plaintext)
        .map_err(crypto_err)
}

/// Opens a sealed document stored as version `version` of the record at `key`. A row moved to
/// another key, tenant or version fails here with `Encryption`.
pub(super) fn open(
    keys: &NamespaceKeys,
    key: &RecordKey,
    version: u64,
    schema_version: u32,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let (header, header_len) = Header::parse(sealed).map_err(|e| {
        Error::new(
            ErrorCode::Encryption,
            "a stored record is not a sealed message",
        )
        .with_source(e)
    })?;
    let data_key = keys.key_for(&header.key_ref)?;
    let (object_key, body_id) = names(key, version, schema_version);
    let ctx = Context {
        tenant: &key.tenant,
        namespace: &key.namespace,
        object_key: &object_key,
        body_id: &body_id,
        kind: kind::RECORD,
    };
    sanctum_crypto::decrypt(data_key, &header, header_len, &ctx, sealed).map_err(crypto_err)
}
