//! Tools for attack tests: rewrite what a hostile backend could rewrite, with the real codecs,
//! so a test changes exactly the field it means to.

use bytes::Bytes;
use serde_json::Value;

use crate::error::Result;
use crate::facade::manifest::{self, HeadManifest, StoredVersion};

/// Rewrites the version records of an encoded head manifest: `edit` gets them newest first, as
/// JSON objects, and may change, drop, add or reorder them. The inline body is kept, and so are
/// the history page ids.
pub fn edit_head_records(head: &[u8], edit: impl FnOnce(&mut Vec<Value>)) -> Result<Vec<u8>> {
    let (decoded, inline) = manifest::decode(Bytes::copy_from_slice(head))?;
    let mut records: Vec<Value> = decoded
        .versions()?
        .iter()
        .map(|v| serde_json::to_value(v).expect("a version encodes"))
        .collect();
    edit(&mut records);
    let versions: Vec<StoredVersion> = records
        .into_iter()
        .map(|v| serde_json::from_value(v).expect("edited records keep their shape"))
        .collect();
    let rebuilt = HeadManifest::from_versions(&versions, decoded.history_pages.clone())?;
    // A head with an inline body keeps it only while its current version has one of that size.
    let inline = inline.filter(|body| {
        versions
            .first()
            .is_some_and(|v| v.body_object_len() == body.len() as u64)
    });
    Ok(manifest::encode(&rebuilt, inline.as_deref())?.to_vec())
}
