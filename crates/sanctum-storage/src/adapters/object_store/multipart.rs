//! Multipart uploads of large bodies: equal parts (the last may be shorter), up to
//! `concurrency` of them in flight, and an upload that fails or is dropped is aborted, so the
//! store neither shows nor keeps a partial body. (If the process dies mid-upload, only the
//! bucket's own cleanup of stale uploads, such as an S3 lifecycle rule, removes the parts.)

use std::sync::Arc;

use ::object_store::path::Path;
use ::object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayloadMut, PutResult};
use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinSet;

use super::errors::map_err;
use crate::adapters::ByteStream;
use crate::error::{Error, ErrorCode, Result};

/// One multipart upload in progress.
struct Upload {
    /// `None` once completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: JoinSet<::object_store::Result<()>>,
    concurrency: usize,
}

/// Where [`stream_parts`] sends each finished part.
trait PartSink {
    async fn put_part(&mut self, part: PutPayloadMut) -> Result<()>;
}

impl PartSink for Upload {
    async fn put_part(&mut self, part: PutPayloadMut) -> Result<()> {
        while self.in_flight.len() >= self.concurrency {
            self.join_one().await?;
        }
        let upload = self.upload.as_mut().expect("upload in progress");
        self.in_flight.spawn(upload.put_part(part.freeze()));
        Ok(())
    }
}

impl Upload {
    async fn join_one(&mut self) -> Result<()> {
        match self.in_flight.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(map_err(e)),
            Some(Err(join)) => Err(Error::new(
                ErrorCode::TransientAdapter,
                "a part upload did not finish",
            )
            .with_source(join)),
        }
    }

    // `complete` and `abort` keep the upload until their request returns, so a put dropped
    // during either still aborts it in `drop` (an abort after a completion is a no-op).
    async fn complete(&mut self) -> Result<PutResult> {
        while !self.in_flight.is_empty() {
            self.join_one().await?;
        }
        let upload = self.upload.as_mut().expect("upload in progress");
        let done = upload.complete().await;
        if done.is_err() {
            let _ = upload.abort().await;
        }
        self.upload = None;
        done.map_err(map_err)
    }

    async fn abort(&mut self) {
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        if let Some(upload) = self.upload.as_mut() {
            let _ = upload.abort().await;
        }
        self.upload = None;
    }
}

impl Drop for Upload {
    /// A dropped put (cancelled by its caller) aborts its upload in the background.
    fn drop(&mut self) {
        self.in_flight.abort_all();
        if let Some(mut upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}

/// Streams `first`, then `carry`, then the rest of `body` to `path` as a multipart upload in
/// parts of exactly `part_size` bytes (the last may be shorter). Returns the put result and the
/// number of bytes written.
pub(super) async fn upload(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    first: PutPayloadMut,
    carry: Bytes,
    body: ByteStream,
    part_size: usize,
    concurrency: usize,
) -> Result<(PutResult, u64)> {
    let mut upload = create(store, path, concurrency).await?;
    let streamed = stream_parts(&mut upload, first, carry, body, part_size).await;
    let finished = match streamed {
        Ok(size) => upload.complete().await.map(|done| (done, size)),
        Err(e) => Err(e),
    };
    if finished.is_err() {
        upload.abort().await;
    }
    finished
}

/// Starts the upload in a task of its own, which hands it over as an [`Upload`]: if the put is
/// dropped while the create request is in flight, or before it takes the upload, the `Upload` is
/// dropped instead and aborts it, so not even that window leaves one behind.
async fn create(store: &Arc<dyn ObjectStore>, path: &Path, concurrency: usize) -> Result<Upload> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (store, path) = (store.clone(), path.clone());
    tokio::spawn(async move {
        let created = store.put_multipart(&path).await.map(|upload| Upload {
            upload: Some(upload),
            in_flight: JoinSet::new(),
            concurrency: concurrency.max(1),
        });
        // On failure the receiver is gone, and dropping the upload aborts it.
        let _ = tx.send(created);
    });
    match rx.await {
        Ok(created) => created.map_err(map_err),
        Err(_) => Err(Error::new(
            ErrorCode::TransientAdapter,
            "the multipart upload could not be started",
        )),
    }
}

async fn stream_parts(
    upload: &mut impl PartSink,
    mut part: PutPayloadMut,
    mut carry: Bytes,
    mut body: ByteStream,
    part_size: usize,
) -> Result<u64> {
    let mut size = part.content_length() as u64;
    loop {
        size += carry.len() as u64;
        while !carry.is_empty() {
            let room = part_size - part.content_length();
            if carry.len() < room {
                part.push(std::mem::take(&mut carry));
            } else {
                part.push(carry.split_to(room));
                upload.put_part(std::mem::take(&mut part)).await?;
            }
        }
        match body.next().await {
            Some(chunk) => carry = chunk?,
            None => break,
        }
    }
    if part.content_length() > 0 {
        upload.put_part(part).await?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Sizes(Vec<usize>);

    impl PartSink for Sizes {
        async fn put_part(&mut self, part: PutPayloadMut) -> Result<()> {
            self.0.push(part.content_length());
            Ok(())
        }
    }

    async fn split(first: usize, chunks: &[usize], part: usize) -> (Vec<usize>, u64) {
        let mut head = PutPayloadMut::new();
        head.push(Bytes::from(vec![1u8; first]));
        let rest: Vec<Result<Bytes>> = chunks
            .iter()
            .map(|&n| Ok(Bytes::from(vec![2u8; n])))
            .collect();
        let body: ByteStream = futures::stream::iter(rest).boxed();
        let mut sizes = Sizes::default();
        let total = stream_parts(&mut sizes, head, Bytes::new(), body, part)
            .await
            .unwrap();
        (sizes.0, total)
    }

    #[tokio::test]
    async fn parts_are_equal_and_only_the_last_is_short() {
        // Chunks that straddle part boundaries are split; nothing is lost or reordered.
        let (sizes, total) = split(7, &[10, 3, 25, 1, 0, 4], 10).await;
        assert_eq!(sizes, [10, 10, 10, 10, 10]);
        assert_eq!(total, 50);
        let (sizes, total) = split(0, &[33], 10).await;
        assert_eq!(sizes, [10, 10, 10, 3]);
        assert_eq!(total, 33);
        let (sizes, _) = split(10, &[], 10).await;
        assert_eq!(sizes, [10]);
    }

    #[tokio::test]
    async fn a_failing_body_stops_the_parts() {
        let body: ByteStream = futures::stream::iter([
            Ok(Bytes::from(vec![0u8; 25])),
            Err(Error::new(ErrorCode::TransientAdapter, "source failed")),
        ])
        .boxed();
        let mut sizes = Sizes::default();
        let err = stream_parts(&mut sizes, PutPayloadMut::new(), Bytes::new(), body, 10)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::TransientAdapter);
        assert_eq!(
            sizes.0,
            [10, 10],
            "the short tail of a failed body is never sent"
        );
    }
}
