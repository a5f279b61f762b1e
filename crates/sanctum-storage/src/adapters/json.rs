//! Small JSON documents kept in a blob adapter next to the data (key store records, grants,
//! quotas), read with their etag so a change can be a compare-and-swap.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{BlobAdapter, BlobPath, PutMode, collect_bytes, once_stream};
use crate::error::{Error, ErrorCode, Result};

/// Reads the document at `path` and its etag; `None` when there is none. A document larger than
/// `max_bytes` or that does not parse is a `Consistency` error naming `what`.
pub(crate) async fn read_json<T: DeserializeOwned>(
    adapter: &dyn BlobAdapter,
    path: &BlobPath,
    max_bytes: u64,
    what: &str,
) -> Result<Option<(T, String)>> {
    let got = match adapter.get(path, None).await {
        Ok(got) => got,
        Err(e) if e.code() == ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if got.meta.size > max_bytes {
        return Err(Error::consistency(format!(
            "{what} is larger than any valid one"
        )));
    }
    let etag = got.meta.etag.clone();
    let bytes = collect_bytes(got.body).await?;
    let value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::consistency(format!("{what} is corrupt")).with_source(e))?;
    Ok(Some((value, etag)))
}

/// Writes `value` to `path` as JSON with `mode` (a lost compare-and-swap is `Conflict`).
pub(crate) async fn write_json<T: Serialize>(
    adapter: &dyn BlobAdapter,
    path: &BlobPath,
    value: &T,
    mode: PutMode,
    what: &str,
) -> Result<()> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| Error::consistency(format!("cannot encode {what}")).with_source(e))?;
    adapter
        .put(path, once_stream(bytes.into()), mode)
        .await
        .map(|_| ())
}
