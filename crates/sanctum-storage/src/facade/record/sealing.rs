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

/// The context of version `version` of the record at `key`, built on the owned `names`.
fn context<'a>(key: &'a RecordKey, names: &'a (String, String)) -> Context<'a> {
    Context {
        tenant: &key.tenant,
        namespace: &key.namespace,
        object_key: &names.0,
        body_id: &names.1,
        kind: kind::RECORD,
    }
}

/// Seals `plaintext` (the document's JSON) as version `version` of the record at `key`.
pub(super) fn seal(
    keys: &NamespaceKeys,
    key: &RecordKey,
    version: u64,
    schema_version: u32,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let names = names(key, version, schema_version);
    let ctx = context(key, &names);
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
    let names = names(key, version, schema_version);
    let ctx = context(key, &names);
    sanctum_crypto::decrypt(data_key, &header, header_len, &ctx, sealed).map_err(crypto_err)
}
