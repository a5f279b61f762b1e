//! Raw adapter checks: the [`BlobAdapter`] contract without the facade.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use super::{SuiteOptions, pattern, unique};
use crate::adapters::registry::check_blob_capabilities;
use crate::adapters::{BlobAdapter, BlobPath, ByteStream, PutMode, collect_bytes, once_stream};
use crate::error::{Error, ErrorCode};

fn path(prefix: &str, rest: &str) -> BlobPath {
    BlobPath::new(format!("{prefix}/{rest}")).expect("valid test path")
}

async fn read(adapter: &Arc<dyn BlobAdapter>, p: &BlobPath) -> Result<Bytes, Error> {
    collect_bytes(adapter.get(p, None).await?.body).await
}

/// Runs every raw check.
pub async fn run_all(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    lifecycle_and_capabilities(adapter, opts).await;
    put_get_head_delete(adapter, opts).await;
    conditional_writes(adapter, opts).await;
    ranged_reads(adapter, opts).await;
    list_pages(adapter, opts).await;
    failed_body_stores_nothing(adapter, opts).await;
    cas_race(adapter, opts).await;
    put_after_waits_for_ready(adapter, opts).await;
}

/// Declared capabilities match, pass admission, and `init`/`health_check` succeed.
pub async fn lifecycle_and_capabilities(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    assert_eq!(
        adapter.capabilities(),
        opts.capabilities,
        "declared capabilities"
    );
    check_blob_capabilities(adapter.as_ref()).expect("capabilities admissible");
    adapter.init().await.expect("init");
    adapter.init().await.expect("init is idempotent");
    adapter.health_check().await.expect("health check");
    assert!(!adapter.kind().is_empty() && !adapter.name().is_empty());
}

/// Write, read, head, overwrite (new etag), delete, then `NotFound` everywhere.
pub async fn put_get_head_delete(adapter: &Arc<dyn BlobAdapter>, _opts: &SuiteOptions) {
    let prefix = unique("raw");
    let p = path(&prefix, "obj");
    let missing = adapter.get(&p, None).await.expect_err("missing get");
    assert_eq!(missing.code(), ErrorCode::NotFound);
    assert_eq!(
        adapter.head(&p).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        adapter.delete(&p, None).await.unwrap_err().code(),
        ErrorCode::NotFound
    );

    let body = pattern(70_000, 1);
    let meta = adapter
        .put(&p, once_stream(body.clone()), PutMode::Overwrite)
        .await
        .expect("put");
    assert_eq!(meta.size, 70_000);
    assert_eq!(read(adapter, &p).await.unwrap(), body);
    let head = adapter.head(&p).await.unwrap();
    assert_eq!(head, meta);

    let chunks: Vec<Result<Bytes, Error>> = (0..10).map(|i| Ok(pattern(1000, i))).collect();
    let expected: Vec<u8> = (0..10).flat_map(|i| pattern(1000, i).to_vec()).collect();
    let meta2 = adapter
        .put(
            &p,
            Box::pin(futures::stream::iter(chunks)),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
    assert_ne!(meta2.etag, meta.etag, "etag changes on every write");
    assert_eq!(read(adapter, &p).await.unwrap(), Bytes::from(expected));

    let empty = path(&prefix, "empty");
    adapter
        .put(&empty, Box::pin(futures::stream::empty()), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(read(adapter, &empty).await.unwrap().len(), 0);

    adapter.delete(&p, None).await.expect("delete");
    assert_eq!(
        adapter.get(&p, None).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    adapter.delete(&empty, None).await.unwrap();
}

/// Create fails on existing objects; Update needs the current etag; conditional delete too.
pub async fn conditional_writes(adapter: &Arc<dyn BlobAdapter>, _opts: &SuiteOptions) {
    let prefix = unique("raw");
    let p = path(&prefix, "cas");
    let stale_update = adapter
        .put(
            &p,
            once_stream(Bytes::from_static(b"x")),
            PutMode::Update("nope".into()),
        )
        .await;
    assert_eq!(
        stale_update.unwrap_err().code(),
        ErrorCode::Conflict,
        "update of a missing object"
    );
    let v1 = adapter
        .put(&p, once_stream(Bytes::from_static(b"one")), PutMode::Create)
        .await
        .unwrap();
    let again = adapter
        .put(&p, once_stream(Bytes::from_static(b"two")), PutMode::Create)
        .await;
    assert_eq!(again.unwrap_err().code(), ErrorCode::Conflict);
    assert_eq!(read(adapter, &p).await.unwrap(), Bytes::from_static(b"one"));
    let v2 = adapter
        .put(
            &p,
            once_stream(Bytes::from_static(b"two")),
            PutMode::Update(v1.etag.clone()),
        )
        .await
        .unwrap();
    let stale = adapter
        .put(
            &p,
            once_stream(Bytes::from_static(b"three")),
            PutMode::Update(v1.etag.clone()),
        )
        .await;
    assert_eq!(stale.unwrap_err().code(), ErrorCode::Conflict);
    assert_eq!(read(adapter, &p).await.unwrap(), Bytes::from_static(b"two"));
    assert_eq!(
        adapter.delete(&p, Some(&v1.etag)).await.unwrap_err().code(),
        ErrorCode::Conflict
    );
    assert_eq!(read(adapter, &p).await.unwrap(), Bytes::from_static(b"two"));
    adapter.delete(&p, Some(&v2.etag)).await.unwrap();
    assert_eq!(
        adapter.head(&p).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

/// Ranges return exactly the bytes asked for; a range past the end is `InvalidInput`.
pub async fn ranged_reads(adapter: &Arc<dyn BlobAdapter>, _opts: &SuiteOptions) {
    let prefix = unique("raw");
    let p = path(&prefix, "ranges");
    let body = pattern(3 * 16384 + 7, 2);
    adapter
        .put(&p, once_stream(body.clone()), PutMode::Create)
        .await
        .unwrap();
    let len = body.len() as u64;
    for range in [0..1, 16383..16385, 16384..32768, len - 1..len, 0..len, 5..5] {
        let got = adapter.get(&p, Some(range.clone())).await.unwrap();
        assert_eq!(got.meta.size, len);
        assert_eq!(got.range, range);
        let bytes = collect_bytes(got.body).await.unwrap();
        assert_eq!(
            bytes,
            body.slice(range.start as usize..range.end as usize),
            "range {range:?}"
        );
    }
    for bad in [len..len + 1, 0..len + 1] {
        let err = adapter
            .get(&p, Some(bad.clone()))
            .await
            .expect_err("range past the end");
        assert_eq!(err.code(), ErrorCode::InvalidInput, "range {bad:?}");
    }
}

/// Listing by string prefix, in byte order, resumable after any path.
pub async fn list_pages(adapter: &Arc<dyn BlobAdapter>, _opts: &SuiteOptions) {
    let prefix = unique("raw");
    let names = ["a", "a-b", "a.k", "a/b", "a/c/d", "ab", "b", "b0/z"];
    for n in names {
        adapter
            .put(
                &path(&prefix, n),
                once_stream(Bytes::from_static(b"1")),
                PutMode::Create,
            )
            .await
            .unwrap();
    }
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = adapter
            .list(&format!("{prefix}/"), after.as_deref(), 3)
            .await
            .unwrap();
        assert!(page.entries.len() <= 3);
        all.extend(page.entries.iter().map(|e| e.path.as_str().to_string()));
        if !page.more {
            break;
        }
        after = page.entries.last().map(|e| e.path.as_str().to_string());
    }
    let mut expected: Vec<String> = names.iter().map(|n| format!("{prefix}/{n}")).collect();
    expected.sort();
    assert_eq!(all, expected, "every path once, in byte order");
    let page = adapter
        .list(&format!("{prefix}/a"), None, 100)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 6, "string prefix, not segment prefix");
    assert!(!page.more);
    let page = adapter
        .list(&format!("{prefix}/a/"), Some(&format!("{prefix}/a/b")), 100)
        .await
        .unwrap();
    let got: Vec<_> = page
        .entries
        .iter()
        .map(|e| e.path.as_str().to_string())
        .collect();
    assert_eq!(got, vec![format!("{prefix}/a/c/d")]);
    assert!(
        adapter
            .list(&format!("{prefix}-none/"), None, 10)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
}

/// A body stream that fails part-way stores nothing and leaves the old object.
pub async fn failed_body_stores_nothing(adapter: &Arc<dyn BlobAdapter>, _opts: &SuiteOptions) {
    let prefix = unique("raw");
    let p = path(&prefix, "obj");
    let fresh = path(&prefix, "fresh");
    adapter
        .put(&p, once_stream(Bytes::from_static(b"old")), PutMode::Create)
        .await
        .unwrap();
    for target in [&p, &fresh] {
        let failing: ByteStream = Box::pin(
            futures::stream::iter(vec![
                Ok(pattern(100_000, 3)),
                Err(Error::invalid("body failed")),
            ])
            .chain(futures::stream::pending()),
        );
        let err = adapter
            .put(target, failing, PutMode::Overwrite)
            .await
            .expect_err("failing body");
        assert_eq!(err.code(), ErrorCode::InvalidInput);
    }
    assert_eq!(read(adapter, &p).await.unwrap(), Bytes::from_static(b"old"));
    assert_eq!(
        adapter.head(&fresh).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

/// `race_writers` concurrent `Update`s with the same etag: exactly one wins.
pub async fn cas_race(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let prefix = unique("raw");
    let p = path(&prefix, "race");
    let mut etag = adapter
        .put(&p, once_stream(Bytes::from_static(b"0")), PutMode::Create)
        .await
        .unwrap()
        .etag;
    for round in 0..opts.race_rounds {
        let tasks: Vec<_> = (0..opts.race_writers)
            .map(|w| {
                let adapter = adapter.clone();
                let p = p.clone();
                let mode = PutMode::Update(etag.clone());
                tokio::spawn(async move {
                    let body = Bytes::from(format!("{round}-{w}"));
                    adapter
                        .put(&p, once_stream(body), mode)
                        .await
                        .map(|m| (w, m))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                Ok(w) => winners.push(w),
                Err(e) => assert_eq!(e.code(), ErrorCode::Conflict),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one CAS winner");
        let (w, meta) = winners.pop().unwrap();
        assert_eq!(
            read(adapter, &p).await.unwrap(),
            Bytes::from(format!("{round}-{w}"))
        );
        etag = meta.etag;
    }
}

/// `put_after` commits only once `ready` resolves `Ok`; a failed `ready` stores nothing and
/// leaves no stray object behind.
pub async fn put_after_waits_for_ready(adapter: &Arc<dyn BlobAdapter>, _opts: &SuiteOptions) {
    let prefix = unique("raw");
    let p = path(&prefix, "after");
    let v1 = adapter
        .put(&p, once_stream(Bytes::from_static(b"one")), PutMode::Create)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let ready: futures::future::BoxFuture<'static, crate::Result<()>> =
        Box::pin(async move { rx.await.map_err(|_| Error::invalid("cancelled")) });
    let pending = adapter.put_after(
        &p,
        once_stream(Bytes::from_static(b"two")),
        PutMode::Update(v1.etag.clone()),
        ready,
    );
    tokio::pin!(pending);
    // While `ready` is pending the write stays invisible.
    assert!(futures::poll!(pending.as_mut()).is_pending());
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(futures::poll!(pending.as_mut()).is_pending());
    assert_eq!(read(adapter, &p).await.unwrap(), Bytes::from_static(b"one"));
    tx.send(()).unwrap();
    let v2 = pending.await.expect("committed after ready");
    assert_eq!(read(adapter, &p).await.unwrap(), Bytes::from_static(b"two"));

    let failed: futures::future::BoxFuture<'static, crate::Result<()>> =
        Box::pin(async { Err(Error::invalid("body failed")) });
    let err = adapter
        .put_after(
            &p,
            once_stream(Bytes::from_static(b"three")),
            PutMode::Update(v2.etag.clone()),
            failed,
        )
        .await;
    assert_eq!(
        err.unwrap_err().code(),
        ErrorCode::InvalidInput,
        "ready's error is returned"
    );
    assert_eq!(read(adapter, &p).await.unwrap(), Bytes::from_static(b"two"));
    assert_eq!(adapter.head(&p).await.unwrap().etag, v2.etag);
    let listed = adapter.list(&format!("{prefix}/"), None, 10).await.unwrap();
    assert_eq!(listed.entries.len(), 1, "no stray objects");
}
