//! Facade checks: the versioning model of the blob facade over the adapter under test.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use super::{SuiteOptions, pattern, unique};
use crate::adapters::{BlobAdapter, collect_bytes};
use crate::crypto::{KeyManager, MemoryKeyProvider};
use crate::error::ErrorCode;
use crate::facade::{BlobSettings, BlobStore, ByteRange, GetOptions, ListOptions, PutOptions};
use crate::observability::audit::MemoryAuditSink;
use crate::observability::clock::{Clock, SystemClock};
use crate::policy::AccessSettings;
use crate::types::StorageContext;

/// A clock that runs `offset` milliseconds ahead of the system clock (to age orphans).
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicU64,
}

impl OffsetClock {
    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for OffsetClock {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// A facade over the adapter, its audit sink, its clock and a fresh tenant's context.
pub struct Fixture {
    /// The facade.
    pub store: BlobStore,
    /// Events the facade audited.
    pub audit: Arc<MemoryAuditSink>,
    /// The facade's clock.
    pub clock: Arc<OffsetClock>,
    /// A context for a fresh tenant.
    pub ctx: StorageContext,
    /// The adapter.
    pub adapter: Arc<dyn BlobAdapter>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture")
            .field("tenant", self.ctx.tenant())
            .finish()
    }
}

impl Fixture {
    /// Builds a fixture over `adapter`.
    pub fn new(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) -> Self {
        let audit = Arc::new(MemoryAuditSink::default());
        let clock = Arc::new(OffsetClock::default());
        let keys = Arc::new(KeyManager::new(
            Arc::new(MemoryKeyProvider::new()),
            adapter.clone(),
            clock.clone(),
        ));
        let store = BlobStore::new(
            adapter.clone(),
            keys,
            clock.clone(),
            audit.clone(),
            BlobSettings {
                inline_threshold: opts.inline_threshold,
                ..Default::default()
            },
        )
        .with_access(AccessSettings::with_superusers(["conformance"]));
        let ctx = StorageContext::new(&unique("t"), "conformance").expect("context");
        Self {
            store,
            audit,
            clock,
            ctx,
            adapter: adapter.clone(),
        }
    }

    async fn read(&self, ns: &str, key: &str, opts: GetOptions) -> crate::Result<Bytes> {
        self.store
            .get_bytes(&self.ctx, ns, key, opts)
            .await
            .map(|(_, b)| b)
    }

    /// Every adapter path stored for this fixture's tenant.
    pub async fn raw_paths(&self) -> Vec<String> {
        let page = self
            .adapter
            .list(&format!("t/{}/", self.ctx.tenant()), None, 100_000)
            .await
            .unwrap();
        page.entries
            .into_iter()
            .map(|e| e.path.as_str().to_string())
            .collect()
    }
}

fn put_opts() -> PutOptions {
    PutOptions::default()
}

fn if_match(v: &str) -> PutOptions {
    PutOptions {
        if_match: Some(v.to_string()),
        ..Default::default()
    }
}

fn if_none_match() -> PutOptions {
    PutOptions {
        if_none_match: true,
        ..Default::default()
    }
}

/// Runs every facade check.
pub async fn run_all(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    write_read_checksum(adapter, opts).await;
    delete_then_not_found(adapter, opts).await;
    update_then_read(adapter, opts).await;
    conditional_writes(adapter, opts).await;
    racing_writers(adapter, opts).await;
    unconditional_writers_lose_nothing(adapter, opts).await;
    ranged_reads(adapter, opts).await;
    ranged_reads_fetch_only_covering_chunks(adapter, opts).await;
    list_pagination(adapter, opts).await;
    versions_restore_purge(adapter, opts).await;
    history_spills_into_pages(adapter, opts).await;
    names_at_limits(adapter, opts).await;
    bad_input_changes_nothing(adapter, opts).await;
    dropped_writer_leaves_previous_version(adapter, opts).await;
    sweeper_removes_only_orphans(adapter, opts).await;
    tenants_are_isolated(adapter, opts).await;
    large_object_streams(adapter, opts).await;
    backend_calls_per_operation(adapter, opts).await;
}

/// A ranged read of a stored (not inlined) body asks the adapter for exactly the sealed chunks
/// that cover the range, and nothing else of the body.
pub async fn ranged_reads_fetch_only_covering_chunks(
    adapter: &Arc<dyn BlobAdapter>,
    opts: &SuiteOptions,
) {
    use super::recording::RecordingAdapter;
    const SEALED: u64 = sanctum_crypto::ENCRYPTED_CHUNK_SIZE as u64;
    const CHUNK: u64 = sanctum_crypto::CHUNK_SIZE as u64;
    let recording = Arc::new(RecordingAdapter::new(adapter.clone()));
    let wrapped: Arc<dyn BlobAdapter> = recording.clone();
    let f = Fixture::new(&wrapped, opts);
    let size = opts.inline_threshold + 10 * CHUNK + 123;
    let body = pattern(size as usize, 77);
    f.store
        .put_bytes(&f.ctx, "r", "big", body.clone(), put_opts())
        .await
        .unwrap();
    // (first, last) inclusive, and the number of chunks that cover it.
    let cases = [
        (0, 0, 1),
        (5 * CHUNK + 1, 5 * CHUNK + 10, 1),
        (CHUNK - 1, CHUNK, 2),
        (2 * CHUNK, 5 * CHUNK - 1, 3),
        (size - 1, size - 1, 1),
    ];
    for (first, last, chunks) in cases {
        let before = recording.gets().len();
        let read = f
            .store
            .get(
                &f.ctx,
                "r",
                "big",
                GetOptions {
                    range: Some(ByteRange::Inclusive { first, last }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let got = collect_bytes(read.body).await.unwrap();
        assert_eq!(got, body.slice(first as usize..=last as usize));
        let body_reads: Vec<_> = recording.gets()[before..]
            .iter()
            .filter(|g| g.path.contains("/b/"))
            .cloned()
            .collect();
        assert_eq!(body_reads.len(), 1, "one body read: {body_reads:?}");
        let range = body_reads[0].range.clone().expect("a ranged body read");
        let last_chunk = (size - 1) / CHUNK;
        // The last chunk is short, so a range that ends in it asks for less than a full chunk.
        let want = if last / CHUNK == last_chunk {
            (chunks - 1) * SEALED + (size - last_chunk * CHUNK) + 16
        } else {
            chunks * SEALED
        };
        assert_eq!(
            range.end - range.start,
            want,
            "range {first}..={last} fetched {range:?}"
        );
    }
}

/// Write, read back byte-identical, and the checksum is BLAKE3 of the body.
pub async fn write_read_checksum(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    // Sizes around the runs of chunks that large bodies are read in (see `facade/parts.rs`).
    for (key, size) in [
        ("small", 100usize),
        ("empty", 0),
        ("large", 300_000),
        ("mib", 1 << 20),
        ("runs", (130 << 14) + 7),
    ] {
        let body = pattern(size, size as u64);
        let mut meta = BTreeMap::new();
        meta.insert("owner".to_string(), "conformance".to_string());
        let put = PutOptions {
            content_type: Some("application/x-test".into()),
            metadata: meta.clone(),
            ..put_opts()
        };
        let v = f
            .store
            .put_bytes(&f.ctx, "docs", key, body.clone(), put)
            .await
            .unwrap();
        assert_eq!(v.size, size as u64);
        assert_eq!(
            v.checksum,
            format!("blake3:{}", blake3::hash(&body).to_hex())
        );
        let (got_v, got) = f
            .store
            .get_bytes(&f.ctx, "docs", key, GetOptions::default())
            .await
            .unwrap();
        assert_eq!(got, body, "{key}");
        assert_eq!(got_v, v);
        let head = f.store.head(&f.ctx, "docs", key).await.unwrap();
        assert_eq!(head.version, v);
        assert_eq!(head.version.metadata, meta);
        assert_eq!(
            head.version.content_type.as_deref(),
            Some("application/x-test")
        );
    }
}

/// Delete hides the key from get, head, list and `if_none_match`; a second delete is `NotFound`.
pub async fn delete_then_not_found(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    f.store
        .put_bytes(&f.ctx, "docs", "k", "v1", put_opts())
        .await
        .unwrap();
    let tomb = f.store.delete(&f.ctx, "docs", "k").await.unwrap();
    assert!(tomb.tombstone);
    assert_eq!(
        f.read("docs", "k", GetOptions::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        f.store.head(&f.ctx, "docs", "k").await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert!(
        f.store
            .list(&f.ctx, "docs", ListOptions::default())
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    assert_eq!(
        f.store
            .delete(&f.ctx, "docs", "k")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        f.store
            .delete(&f.ctx, "docs", "never")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    let versions = f.store.versions(&f.ctx, "docs", "k").await.unwrap();
    assert_eq!(versions.len(), 2);
    assert!(versions[0].tombstone && !versions[1].tombstone);
    f.store
        .put_bytes(&f.ctx, "docs", "k", "v2", if_none_match())
        .await
        .expect("tombstoned key is absent");
    assert_eq!(
        f.read("docs", "k", GetOptions::default()).await.unwrap(),
        "v2"
    );
    // Actions only (access decisions are audited too, and checked elsewhere).
    let events: Vec<_> = f
        .audit
        .events()
        .into_iter()
        .filter(|e| e.decision.is_none())
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].operation, events[0].key.as_deref()),
        ("blob.delete", Some("k"))
    );
}

/// Update then read returns the new body; the old version stays readable by id.
pub async fn update_then_read(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let big = pattern(200_000, 9);
    let v1 = f
        .store
        .put_bytes(&f.ctx, "docs", "k", big.clone(), put_opts())
        .await
        .unwrap();
    let v2 = f
        .store
        .put_bytes(&f.ctx, "docs", "k", "second", put_opts())
        .await
        .unwrap();
    assert_ne!(v1.version_id, v2.version_id);
    assert_eq!(
        f.read("docs", "k", GetOptions::default()).await.unwrap(),
        "second"
    );
    let old = GetOptions {
        version: Some(v1.version_id.clone()),
        ..Default::default()
    };
    assert_eq!(f.read("docs", "k", old).await.unwrap(), big);
}

/// `if_none_match` and `if_match` succeed exactly when their condition holds.
pub async fn conditional_writes(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let v1 = f
        .store
        .put_bytes(&f.ctx, "docs", "k", "one", if_none_match())
        .await
        .unwrap();
    let err = f
        .store
        .put_bytes(&f.ctx, "docs", "k", "two", if_none_match())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    let v2 = f
        .store
        .put_bytes(&f.ctx, "docs", "k", "two", if_match(&v1.version_id))
        .await
        .unwrap();
    let err = f
        .store
        .put_bytes(&f.ctx, "docs", "k", "three", if_match(&v1.version_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    let err = f
        .store
        .put_bytes(&f.ctx, "docs", "missing", "x", if_match(&v1.version_id))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Conflict);
    assert_eq!(
        f.read("docs", "k", GetOptions::default()).await.unwrap(),
        "two"
    );
    assert_eq!(
        f.store.versions(&f.ctx, "docs", "k").await.unwrap().len(),
        2
    );
    assert_eq!(f.store.head(&f.ctx, "docs", "k").await.unwrap().version, v2);
    // Failed conditional writes leave no bodies behind. v1 got its body object when v2 became
    // current; v2, small and inlined, lives in the head until it is no longer current.
    let bodies = f
        .raw_paths()
        .await
        .into_iter()
        .filter(|p| p.contains("/b/"))
        .count();
    assert_eq!(bodies, 1 + usize::from(opts.inline_threshold < 3));
}

/// `race_writers` tasks with the same `if_match` per round: exactly one wins each round.
pub async fn racing_writers(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Arc::new(Fixture::new(adapter, opts));
    let mut current = f
        .store
        .put_bytes(&f.ctx, "race", "k", "start", put_opts())
        .await
        .unwrap()
        .version_id;
    for round in 0..opts.race_rounds {
        let tasks: Vec<_> = (0..opts.race_writers)
            .map(|w| {
                let f = f.clone();
                let cond = if_match(&current);
                tokio::spawn(async move {
                    let body = format!("round {round} writer {w}");
                    f.store
                        .put_bytes(&f.ctx, "race", "k", body.clone(), cond)
                        .await
                        .map(|v| (v, body))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(w) => winners.push(w),
                Err(e) => assert_eq!(e.code(), ErrorCode::Conflict, "losers get Conflict"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner");
        let (v, body) = winners.pop().unwrap();
        assert_eq!(
            f.read("race", "k", GetOptions::default()).await.unwrap(),
            body
        );
        current = v.version_id;
    }
    assert_eq!(
        f.store.versions(&f.ctx, "race", "k").await.unwrap().len(),
        1 + opts.race_rounds
    );
    // The same with if_none_match on a fresh key.
    let tasks: Vec<_> = (0..opts.race_writers)
        .map(|w| {
            let f = f.clone();
            tokio::spawn(async move {
                f.store
                    .put_bytes(&f.ctx, "race", "fresh", format!("{w}"), if_none_match())
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(e) => assert_eq!(e.code(), ErrorCode::Conflict),
        }
    }
    assert_eq!(wins, 1, "exactly one if_none_match winner");
    let bodies = f
        .raw_paths()
        .await
        .into_iter()
        .filter(|p| p.contains("/b/"))
        .count();
    // Every version but the two keys' current ones has its body object (the current ones,
    // small and inlined, live in their heads).
    let current_in_heads = if opts.inline_threshold >= 2 { 2 } else { 0 };
    assert_eq!(
        bodies,
        2 + opts.race_rounds - current_in_heads,
        "losers deleted their bodies"
    );
}

/// Concurrent unconditional writers all commit: history has every one of them.
pub async fn unconditional_writers_lose_nothing(
    adapter: &Arc<dyn BlobAdapter>,
    opts: &SuiteOptions,
) {
    let f = Arc::new(Fixture::new(adapter, opts));
    let tasks: Vec<_> = (0..opts.race_writers)
        .map(|w| {
            let f = f.clone();
            tokio::spawn(async move {
                f.store
                    .put_bytes(&f.ctx, "race", "k", format!("{w}"), put_opts())
                    .await
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(
            t.await
                .unwrap()
                .expect("unconditional writes succeed")
                .version_id,
        );
    }
    let versions = f.store.versions(&f.ctx, "race", "k").await.unwrap();
    let mut listed: Vec<_> = versions.iter().map(|v| v.version_id.clone()).collect();
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids, "every committed write is in the history");
    let current = f.store.head(&f.ctx, "race", "k").await.unwrap().version;
    assert_eq!(current.version_id, versions[0].version_id);
}

/// Ranges at chunk boundaries, at the inline threshold and one byte either side, and at the end.
pub async fn ranged_reads(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let t = opts.inline_threshold;
    let sizes = [t.saturating_sub(1), t, t + 1, 3 * 16384 + 100];
    for (i, size) in sizes.into_iter().enumerate() {
        let key = format!("obj-{i}");
        let body = pattern(size as usize, size);
        f.store
            .put_bytes(&f.ctx, "r", &key, body.clone(), put_opts())
            .await
            .unwrap();
        let mut ranges = vec![
            ByteRange::Inclusive { first: 0, last: 0 },
            ByteRange::Inclusive {
                first: 16383,
                last: 16384,
            },
            ByteRange::Inclusive {
                first: 16384,
                last: 32767,
            },
            ByteRange::Inclusive {
                first: 0,
                last: size + 10,
            },
            ByteRange::From(size.saturating_sub(1)),
            ByteRange::Suffix(1),
            ByteRange::Suffix(size + 5),
            ByteRange::Inclusive {
                first: t.saturating_sub(1),
                last: t + 1,
            },
        ];
        ranges.retain(|r| r.resolve(size).is_ok());
        for r in ranges {
            let want = r.resolve(size).unwrap();
            let read = f
                .store
                .get(
                    &f.ctx,
                    "r",
                    &key,
                    GetOptions {
                        range: Some(r),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(read.range, want);
            let got = collect_bytes(read.body).await.unwrap();
            assert_eq!(
                got,
                body.slice(want.start as usize..want.end as usize),
                "size {size} range {r}"
            );
        }
        let past = GetOptions {
            range: Some(ByteRange::From(size)),
            ..Default::default()
        };
        assert_eq!(
            f.read("r", &key, past).await.unwrap_err().code(),
            ErrorCode::InvalidInput
        );
    }
}

/// Pagination over more keys than a page: every live key once, in order; tombstones hidden.
pub async fn list_pagination(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let mut keys: Vec<String> = (0..23).map(|i| format!("dir/{i:03}")).collect();
    keys.extend([
        "a".to_string(),
        "a/b".to_string(),
        "dir".to_string(),
        "dirt".to_string(),
        "z".repeat(300),
    ]);
    for k in &keys {
        f.store
            .put_bytes(&f.ctx, "ls", k, k.clone(), put_opts())
            .await
            .unwrap();
    }
    f.store.delete(&f.ctx, "ls", "dir/005").await.unwrap();
    keys.retain(|k| k != "dir/005");
    keys.sort();
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = f
            .store
            .list(
                &f.ctx,
                "ls",
                ListOptions {
                    prefix: String::new(),
                    cursor,
                    limit: 5,
                    ..ListOptions::default()
                },
            )
            .await
            .unwrap();
        assert!(page.objects.len() <= 5);
        seen.extend(page.objects.iter().map(|o| o.key.clone()));
        pages += 1;
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, keys, "every live key exactly once, in byte order");
    assert!(pages >= 6);
    let dir = f
        .store
        .list(
            &f.ctx,
            "ls",
            ListOptions {
                prefix: "dir/".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(dir.objects.len(), 22);
    assert!(dir.objects.iter().all(|o| o.key.starts_with("dir/")));
    let bad = ListOptions {
        cursor: Some("not-a-cursor".into()),
        ..Default::default()
    };
    assert_eq!(
        f.store.list(&f.ctx, "ls", bad).await.unwrap_err().code(),
        ErrorCode::InvalidInput
    );
    let zero = ListOptions {
        limit: 0,
        ..Default::default()
    };
    assert_eq!(
        f.store.list(&f.ctx, "ls", zero).await.unwrap_err().code(),
        ErrorCode::InvalidInput
    );
}

/// Versions, restore (no copy, no ABA), tombstones and purge (nothing left behind).
pub async fn versions_restore_purge(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let big = pattern(150_000, 4);
    let v1 = f
        .store
        .put_bytes(&f.ctx, "v", "k", "first", put_opts())
        .await
        .unwrap();
    let v2 = f
        .store
        .put_bytes(&f.ctx, "v", "k", big.clone(), put_opts())
        .await
        .unwrap();
    f.store.delete(&f.ctx, "v", "k").await.unwrap();
    let r1 = f
        .store
        .restore(&f.ctx, "v", "k", &v1.version_id)
        .await
        .unwrap();
    assert_eq!(r1.body_id, v1.body_id, "restore points at the old body");
    assert_eq!(r1.restored_from.as_deref(), Some(v1.version_id.as_str()));
    assert_ne!(r1.version_id, v1.version_id);
    assert_eq!(
        f.read("v", "k", GetOptions::default()).await.unwrap(),
        "first"
    );
    let err = f
        .store
        .put_bytes(&f.ctx, "v", "k", "x", if_match(&v1.version_id))
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        ErrorCode::Conflict,
        "an old version id never matches again"
    );
    let r2 = f
        .store
        .restore(&f.ctx, "v", "k", &v2.version_id)
        .await
        .unwrap();
    assert_eq!(f.read("v", "k", GetOptions::default()).await.unwrap(), big);
    let versions = f.store.versions(&f.ctx, "v", "k").await.unwrap();
    let ids: Vec<_> = versions.iter().map(|v| v.version_id.as_str()).collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(
        (ids[0], ids[1], ids[3], ids[4]),
        (
            r2.version_id.as_str(),
            r1.version_id.as_str(),
            v2.version_id.as_str(),
            v1.version_id.as_str()
        )
    );
    assert!(versions[2].tombstone);
    let missing = f
        .store
        .restore(&f.ctx, "v", "k", &versions[2].version_id)
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        ErrorCode::NotFound,
        "a tombstone cannot be restored"
    );
    let body_count = f
        .raw_paths()
        .await
        .into_iter()
        .filter(|p| p.contains("/b/"))
        .count();
    assert_eq!(body_count, 2, "restores copy nothing");

    f.store
        .put_bytes(&f.ctx, "v", "other", "keep", put_opts())
        .await
        .unwrap();
    f.store.purge(&f.ctx, "v", "k").await.unwrap();
    assert_eq!(
        f.read("v", "k", GetOptions::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        f.store.versions(&f.ctx, "v", "k").await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    let old = GetOptions {
        version: Some(v1.version_id.clone()),
        ..Default::default()
    };
    assert_eq!(
        f.read("v", "k", old).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        f.store.purge(&f.ctx, "v", "k").await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    let left = f.raw_paths().await;
    // Where a checked delete is not atomic, purge leaves its marker head (it reads as absent).
    let marker = usize::from(!f.adapter.capabilities().atomic_conditional_delete);
    // The other key's one small version lives in its head (no body object yet).
    let other_body = usize::from(opts.inline_threshold < 4);
    assert_eq!(
        left.len(),
        1 + other_body + marker,
        "only the other key's head (and a purge marker) remain: {left:?}"
    );
    assert_eq!(
        f.read("v", "other", GetOptions::default()).await.unwrap(),
        "keep"
    );
    let ops: Vec<_> = f
        .audit
        .events()
        .iter()
        .filter(|e| e.decision.is_none())
        .map(|e| e.operation)
        .collect();
    assert_eq!(
        ops,
        ["blob.delete", "blob.restore", "blob.restore", "blob.purge"]
    );
    // A purged key can be written again from scratch.
    f.store
        .put_bytes(&f.ctx, "v", "k", "reborn", if_none_match())
        .await
        .unwrap();
    assert_eq!(f.store.versions(&f.ctx, "v", "k").await.unwrap().len(), 1);
}

/// Past a few hundred versions the history spills into pages and stays complete.
pub async fn history_spills_into_pages(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(
            f.store
                .put_bytes(&f.ctx, "h", "k", format!("v{i}"), put_opts())
                .await
                .unwrap()
                .version_id,
        );
    }
    let versions = f.store.versions(&f.ctx, "h", "k").await.unwrap();
    let listed: Vec<_> = versions
        .iter()
        .rev()
        .map(|v| v.version_id.clone())
        .collect();
    assert_eq!(listed, ids, "complete history, newest first");
    assert!(
        f.raw_paths().await.iter().any(|p| p.contains("/p/")),
        "a history page was written"
    );
    let oldest = GetOptions {
        version: Some(ids[0].clone()),
        ..Default::default()
    };
    assert_eq!(f.read("h", "k", oldest).await.unwrap(), "v0");
    f.store.restore(&f.ctx, "h", "k", &ids[1]).await.unwrap();
    assert_eq!(f.read("h", "k", GetOptions::default()).await.unwrap(), "v1");
    f.store.purge(&f.ctx, "h", "k").await.unwrap();
    let left = f.raw_paths().await;
    let marker = usize::from(!f.adapter.capabilities().atomic_conditional_delete);
    assert!(
        left.len() == marker && left.iter().all(|p| p.contains("/h/")),
        "purge removes pages and every body: {left:?}"
    );
}

/// Names at their limits work; one past is `InvalidInput`.
pub async fn names_at_limits(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let key = "k".repeat(1024);
    let ns = "n".repeat(63);
    f.store
        .put_bytes(&f.ctx, &ns, &key, "max", put_opts())
        .await
        .unwrap();
    assert_eq!(
        f.read(&ns, &key, GetOptions::default()).await.unwrap(),
        "max"
    );
    let listed = f
        .store
        .list(&f.ctx, &ns, ListOptions::default())
        .await
        .unwrap();
    assert_eq!(listed.objects[0].key, key);
    let deep = vec!["d"; 512].join("/");
    assert_eq!(deep.len(), 1023);
    f.store
        .put_bytes(&f.ctx, &ns, &deep, "deep", put_opts())
        .await
        .unwrap();
    assert_eq!(
        f.read(&ns, &deep, GetOptions::default()).await.unwrap(),
        "deep"
    );
    let mut meta = BTreeMap::new();
    meta.insert("m".to_string(), "v".repeat(2047));
    let ct = "t".repeat(256);
    let full = PutOptions {
        metadata: meta.clone(),
        content_type: Some(ct.clone()),
        ..put_opts()
    };
    f.store
        .put_bytes(&f.ctx, &ns, "meta", "x", full)
        .await
        .unwrap();

    let over_key = "k".repeat(1025);
    let over_ns = "n".repeat(64);
    meta.insert("m".to_string(), "v".repeat(2048));
    let over_meta = PutOptions {
        metadata: meta,
        ..put_opts()
    };
    let over_ct = PutOptions {
        content_type: Some("t".repeat(257)),
        ..put_opts()
    };
    let before = f.raw_paths().await;
    for (ns, key, o) in [
        (ns.as_str(), over_key.as_str(), put_opts()),
        (over_ns.as_str(), "k", put_opts()),
        (ns.as_str(), "k2", over_meta),
        (ns.as_str(), "k3", over_ct),
    ] {
        let err = f
            .store
            .put_bytes(&f.ctx, ns, key, "x", o)
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput);
    }
    assert_eq!(f.raw_paths().await, before, "rejected writes store nothing");
}

/// Path tricks, malformed ids, missing versions and bad ranges get typed errors and change nothing.
pub async fn bad_input_changes_nothing(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let v = f
        .store
        .put_bytes(&f.ctx, "docs", "k", "keep", put_opts())
        .await
        .unwrap();
    let before = f.raw_paths().await;
    for key in ["../k", "/k", "a/../k", "k/", "./k", "", "a\u{0}b", "a//b"] {
        let err = f
            .store
            .put_bytes(&f.ctx, "docs", key, "x", put_opts())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput, "{key:?}");
        assert_eq!(
            f.read("docs", key, GetOptions::default())
                .await
                .unwrap_err()
                .code(),
            ErrorCode::InvalidInput
        );
    }
    for ns in ["../docs", "Docs", "docs/x", "-docs", ""] {
        let err = f
            .store
            .put_bytes(&f.ctx, ns, "k", "x", put_opts())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput, "{ns:?}");
    }
    let bad_version = GetOptions {
        version: Some("../../x".into()),
        ..Default::default()
    };
    assert_eq!(
        f.read("docs", "k", bad_version).await.unwrap_err().code(),
        ErrorCode::InvalidInput
    );
    let missing = crate::observability::clock::new_id(&SystemClock);
    let absent = GetOptions {
        version: Some(missing.clone()),
        ..Default::default()
    };
    assert_eq!(
        f.read("docs", "k", absent).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        f.store
            .restore(&f.ctx, "docs", "k", &missing)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        f.store
            .restore(&f.ctx, "docs", "k", "nope")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    let err = f
        .store
        .put_bytes(&f.ctx, "docs", "k", "x", if_match("bogus"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    let mut bad_meta = BTreeMap::new();
    bad_meta.insert("bad key".to_string(), "v".to_string());
    let err = f
        .store
        .put_bytes(
            &f.ctx,
            "docs",
            "k",
            "x",
            PutOptions {
                metadata: bad_meta,
                ..put_opts()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(f.raw_paths().await, before, "nothing stored");
    assert_eq!(f.store.head(&f.ctx, "docs", "k").await.unwrap().version, v);
}

/// A writer dropped mid-body, or whose body fails, leaves the previous version readable and no
/// visible new version.
pub async fn dropped_writer_leaves_previous_version(
    adapter: &Arc<dyn BlobAdapter>,
    opts: &SuiteOptions,
) {
    let f = Fixture::new(adapter, opts);
    let v1 = f
        .store
        .put_bytes(&f.ctx, "d", "k", "previous", put_opts())
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    let body =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) });
    let store = f.store.clone();
    let ctx = f.ctx.clone();
    let writer =
        tokio::spawn(async move { store.put(&ctx, "d", "k", body, PutOptions::default()).await });
    for i in 0..8 {
        tx.send(Ok(pattern(64 * 1024, i))).await.unwrap();
    }
    writer.abort(); // dropped mid-body: the sender is still open
    assert!(writer.await.unwrap_err().is_cancelled());
    drop(tx);
    assert_eq!(
        f.read("d", "k", GetOptions::default()).await.unwrap(),
        "previous"
    );
    assert_eq!(
        f.store.versions(&f.ctx, "d", "k").await.unwrap(),
        vec![v1.clone()]
    );

    let failing = futures::stream::iter(vec![
        Ok(pattern(100_000, 1)),
        Err(std::io::Error::other("disk gone")),
    ]);
    let err = f
        .store
        .put(&f.ctx, "d", "k", failing, put_opts())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(
        f.read("d", "k", GetOptions::default()).await.unwrap(),
        "previous"
    );
    assert_eq!(f.store.versions(&f.ctx, "d", "k").await.unwrap(), vec![v1]);
}

/// The sweeper deletes unreferenced bodies past the grace period and nothing else.
pub async fn sweeper_removes_only_orphans(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let big = pattern(100_000, 7);
    let v1 = f
        .store
        .put_bytes(&f.ctx, "s", "k", big.clone(), put_opts())
        .await
        .unwrap();
    f.store
        .put_bytes(&f.ctx, "s", "k", "v2", put_opts())
        .await
        .unwrap();
    // An orphan as a crashed writer leaves it: a body no head lists.
    let orphan_id = crate::observability::clock::new_id(f.clock.as_ref());
    let head_path = f
        .raw_paths()
        .await
        .into_iter()
        .find(|p| p.contains("/h/"))
        .unwrap();
    let orphan = head_path.replacen("/h/", "/b/", 1) + "/" + &orphan_id;
    let orphan = crate::adapters::BlobPath::new(orphan).unwrap();
    f.adapter
        .put(
            &orphan,
            crate::adapters::once_stream(Bytes::from_static(b"junk")),
            crate::adapters::PutMode::Create,
        )
        .await
        .unwrap();
    let young = f
        .store
        .sweep(&f.ctx, "s", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        young.bodies_deleted, 0,
        "orphans younger than the grace period stay"
    );
    f.clock.advance(Duration::from_secs(7200));
    let report = f
        .store
        .sweep(&f.ctx, "s", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(report.bodies_deleted, 1);
    assert_eq!(
        f.adapter.head(&orphan).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    let old = GetOptions {
        version: Some(v1.version_id),
        ..Default::default()
    };
    assert_eq!(
        f.read("s", "k", old).await.unwrap(),
        big,
        "referenced bodies survive"
    );
    assert_eq!(f.read("s", "k", GetOptions::default()).await.unwrap(), "v2");
}

/// Two tenants with the same namespace and key never see each other.
pub async fn tenants_are_isolated(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let a = Fixture::new(adapter, opts);
    let b = Fixture::new(adapter, opts);
    let va = a
        .store
        .put_bytes(&a.ctx, "shared", "k", "tenant a", put_opts())
        .await
        .unwrap();
    assert_eq!(
        b.read("shared", "k", GetOptions::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    let by_id = GetOptions {
        version: Some(va.version_id.clone()),
        ..Default::default()
    };
    assert_eq!(
        b.read("shared", "k", by_id).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        b.store
            .restore(&b.ctx, "shared", "k", &va.version_id)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert!(
        b.store
            .list(&b.ctx, "shared", ListOptions::default())
            .await
            .unwrap()
            .objects
            .is_empty()
    );
    b.store
        .put_bytes(&b.ctx, "shared", "k", "tenant b", put_opts())
        .await
        .unwrap();
    let page = a
        .store
        .list(
            &a.ctx,
            "shared",
            ListOptions {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page.objects.len(), 1);
    assert_eq!(
        a.read("shared", "k", GetOptions::default()).await.unwrap(),
        "tenant a"
    );
    assert_eq!(
        b.read("shared", "k", GetOptions::default()).await.unwrap(),
        "tenant b"
    );
}

/// A large object streams through put and get without being held in memory by the test.
pub async fn large_object_streams(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    let f = Fixture::new(adapter, opts);
    let chunk = pattern(1024 * 1024, 42);
    let chunks = opts.large_object_bytes / chunk.len() as u64;
    let tail = (opts.large_object_bytes % chunk.len() as u64) as usize;
    let mut hasher = blake3::Hasher::new();
    for _ in 0..chunks {
        hasher.update(&chunk);
    }
    hasher.update(&chunk[..tail]);
    let expected = format!("blake3:{}", hasher.finalize().to_hex());
    let body_chunk = chunk.clone();
    let body = futures::stream::iter(0..chunks)
        .map(move |_| Ok(body_chunk.clone()))
        .chain(futures::stream::iter([Ok(chunk.slice(..tail))]));
    let v = f
        .store
        .put(&f.ctx, "big", "obj", body, put_opts())
        .await
        .unwrap();
    assert_eq!(v.size, opts.large_object_bytes);
    assert_eq!(v.checksum, expected);
    let mut read = f
        .store
        .get(&f.ctx, "big", "obj", GetOptions::default())
        .await
        .unwrap();
    let mut hasher = blake3::Hasher::new();
    let mut total = 0u64;
    while let Some(piece) = read.body.next().await {
        let piece = piece.expect("stream ends cleanly");
        total += piece.len() as u64;
        hasher.update(&piece);
    }
    assert_eq!(total, opts.large_object_bytes);
    assert_eq!(format!("blake3:{}", hasher.finalize().to_hex()), expected);
    let tail_range = GetOptions {
        range: Some(ByteRange::Suffix(10)),
        ..Default::default()
    };
    let got = f.read("big", "obj", tail_range).await.unwrap();
    assert_eq!(got.len(), 10);
    f.store.purge(&f.ctx, "big", "obj").await.unwrap();
}

/// Backend calls per operation: a small get is one read, a large get two, a put two writes
/// plus the head read.
pub async fn backend_calls_per_operation(adapter: &Arc<dyn BlobAdapter>, opts: &SuiteOptions) {
    use super::counting::{CallCounts, CountingAdapter};
    let counting = Arc::new(CountingAdapter::new(adapter.clone()));
    let wrapped: Arc<dyn BlobAdapter> = counting.clone();
    let f = Fixture::new(&wrapped, opts);
    let small = pattern(opts.inline_threshold.min(4096) as usize, 1);
    let large = pattern(opts.inline_threshold as usize + 1, 2);
    // The namespace's first write creates its keys (tenant and namespace records).
    f.store
        .put_bytes(&f.ctx, "c", "warm-up", "x", put_opts())
        .await
        .unwrap();
    counting.reset();
    f.store
        .put_bytes(&f.ctx, "c", "small", small.clone(), put_opts())
        .await
        .unwrap();
    assert_eq!(
        counting.counts(),
        CallCounts {
            puts: 1,
            gets: 1,
            ..Default::default()
        },
        "a small put with cached keys: head read, head (the body is inlined; its object is \
         written when another version becomes current)"
    );
    counting.reset();
    f.store
        .put_bytes(&f.ctx, "c", "small", small.clone(), put_opts())
        .await
        .unwrap();
    assert_eq!(
        counting.counts(),
        CallCounts {
            puts: 2,
            gets: 1,
            ..Default::default()
        },
        "a small put over a small version: head read, the old version's body object, head"
    );
    f.store
        .put_bytes(&f.ctx, "c", "large", large.clone(), put_opts())
        .await
        .unwrap();
    counting.reset();
    assert_eq!(
        f.read("c", "small", GetOptions::default()).await.unwrap(),
        small
    );
    assert_eq!(
        counting.counts(),
        CallCounts {
            gets: 1,
            ..Default::default()
        },
        "a small get is one read"
    );
    counting.reset();
    assert_eq!(
        f.read("c", "large", GetOptions::default()).await.unwrap(),
        large
    );
    assert_eq!(
        counting.counts(),
        CallCounts {
            gets: 2,
            ..Default::default()
        },
        "a large get is two reads"
    );
}
