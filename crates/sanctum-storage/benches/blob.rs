//! Blob benchmark: the facade (encrypted, as it always runs, and in the clear for comparison)
//! against raw baselines and raw AES-256-GCM in the same run, with ratios and backend calls per
//! operation. Run: `cargo bench -p sanctum-storage --bench blob`.
//!
//! Environment: `SANCTUM_BENCH_DIR` (folder for files; default: the system temp dir),
//! `SANCTUM_BENCH_QUICK=1` (fewer rounds, no 256 MiB rows), `SANCTUM_BENCH_ONLY=memory:4096` or
//! `local:1048576` (one pair and size, for profiling).
//!
//! - local: the facade over the local adapter (fsync durability) vs a raw file with the same
//!   durability (temp file written from the same chunks, fsynced, renamed, directory fsynced;
//!   read back in 256 KiB chunks), plus object_store's `LocalFileSystem` (no fsync) for reference.
//! - memory: the facade over the in-memory adapter vs the raw in-memory adapter; all contenders
//!   keep what they write, each reads back its own object, and all drain every byte into the
//!   same sink.
//! - crypto: raw AES-256-GCM (ring, one core, 16 KiB chunks) against the encrypted in-memory
//!   facade; BLAKE3 alone; and the peak resident memory of a child process that puts and gets
//!   256 MiB through the encrypted facade on the local adapter.
//!
//! "plain" is the facade with `plaintext_for_benchmarks` (feature `conformance`): the same code
//! path without encryption, so the difference is what encryption costs.

use std::hint::black_box;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use sanctum_storage::StorageContext;
use sanctum_storage::adapters::local::{Durability, LocalAdapter};
use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::adapters::{BlobAdapter, BlobPath, ByteStream, PutMode};
use sanctum_storage::conformance::counting::CountingAdapter;
use sanctum_storage::conformance::pattern;
use sanctum_storage::crypto::{KeyManager, MemoryKeyProvider};
use sanctum_storage::facade::{BlobSettings, BlobStore, GetOptions, PutOptions};
use sanctum_storage::observability::audit::MemoryAuditSink;
use sanctum_storage::observability::clock::SystemClock;
use sanctum_storage::policy::AccessSettings;

#[path = "support/memory.rs"]
mod memory;
mod support;
use memory::{peak_rss_kib, reset_peak, rss_kib};

use support::{KIB, MIB, Sink, drain, human, mbps, median};

const CHUNK: usize = 256 * 1024;

/// The bytes of one object, as the chunks every contender writes.
#[derive(Clone)]
struct Body {
    chunks: Vec<Bytes>,
}

impl Body {
    fn new(len: usize) -> Self {
        let block = pattern(CHUNK.min(len.max(1)), len as u64);
        let mut chunks = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            chunks.push(block.slice(..n));
            left -= n;
        }
        Self { chunks }
    }

    fn stream(&self) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        futures::stream::iter(self.chunks.clone().into_iter().map(Ok))
    }

    fn adapter_stream(&self) -> ByteStream {
        futures::stream::iter(self.chunks.clone().into_iter().map(Ok)).boxed()
    }
}

fn sync_dir(dir: &Path) {
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// Raw baseline put: temp file, fsync, rename, fsync the directory.
fn raw_file_put(dir: &Path, name: &str, body: &Body) {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    for c in &body.chunks {
        f.write_all(c).unwrap();
    }
    f.sync_all().unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
    sync_dir(dir);
}

fn raw_file_get(path: &Path) -> u64 {
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut sink = Sink::default();
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sink.take(&buf[..n]);
    }
    sink.finish()
}

/// Timings of one operation at one size, per contender.
#[derive(Default)]
struct Times {
    encrypted: Vec<Duration>,
    plain: Vec<Duration>,
    baseline: Vec<Duration>,
    reference: Vec<Duration>,
    calls: u64,
}

struct Row {
    op: &'static str,
    size: usize,
    encrypted: Duration,
    plain: Duration,
    baseline: Duration,
    reference: Option<Duration>,
    calls: f64,
}

impl Row {
    fn new(op: &'static str, size: usize, t: Times, rounds: usize) -> Row {
        let reference = (!t.reference.is_empty()).then(|| median(&t.reference));
        Row {
            op,
            size,
            encrypted: median(&t.encrypted),
            plain: median(&t.plain),
            baseline: median(&t.baseline),
            reference,
            calls: t.calls as f64 / rounds as f64,
        }
    }
}

fn print_rows(title: &str, baseline: &str, rows: &[Row]) {
    println!(
        "\n## {title}\nbaseline: {baseline}; ratios are throughput relative to the baseline (100% = as fast)"
    );
    println!(
        "| op | size | encrypted MiB/s | plain MiB/s | baseline MiB/s | encrypted / baseline | plain / baseline | encryption cost (time, vs plain) | reference MiB/s | backend calls/op |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let reference = r
            .reference
            .map(|d| format!("{:.1}", mbps(r.size, d)))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1}% | {:.1}% | +{:.0}% | {} | {:.1} |",
            r.op,
            human(r.size),
            mbps(r.size, r.encrypted),
            mbps(r.size, r.plain),
            mbps(r.size, r.baseline),
            100.0 * r.baseline.as_secs_f64() / r.encrypted.as_secs_f64(),
            100.0 * r.baseline.as_secs_f64() / r.plain.as_secs_f64(),
            100.0 * (r.encrypted.as_secs_f64() / r.plain.as_secs_f64() - 1.0),
            reference,
            r.calls
        );
    }
}

fn rounds(size: usize, quick: bool) -> usize {
    match (size, quick) {
        (s, _) if s >= 64 * MIB => 5,
        (s, true) if s >= MIB => 5,
        (s, false) if s >= MIB => 30,
        (_, true) => 30,
        _ => 300,
    }
}

/// An encrypted facade over `adapter` with in-memory keys, and the same in the clear (sharing
/// the keys, which it still loads, so both do the same work but the encryption).
fn facades(adapter: Arc<dyn BlobAdapter>) -> (BlobStore, BlobStore) {
    facades_with(adapter, sanctum_crypto::Suite::default())
}

/// An encrypted and a plaintext facade over `adapter`, sealing new messages with `suite`.
fn facades_with(
    adapter: Arc<dyn BlobAdapter>,
    suite: sanctum_crypto::Suite,
) -> (BlobStore, BlobStore) {
    let clock = Arc::new(SystemClock);
    let keys = Arc::new(
        KeyManager::new(
            Arc::new(MemoryKeyProvider::new()),
            adapter.clone(),
            clock.clone(),
        )
        .with_suite(suite),
    );
    let make = |plain| {
        let settings = BlobSettings {
            plaintext_for_benchmarks: plain,
            ..Default::default()
        };
        BlobStore::new(
            adapter.clone(),
            keys.clone(),
            clock.clone(),
            Arc::new(MemoryAuditSink::default()),
            settings,
        )
        .with_access(AccessSettings::with_superusers(["bench"]))
    };
    (make(false), make(true))
}

async fn facade_put(store: &BlobStore, ctx: &StorageContext, key: &str, body: &Body) -> Duration {
    let t = Instant::now();
    store
        .put(ctx, "ns", key, body.stream(), PutOptions::default())
        .await
        .unwrap();
    t.elapsed()
}

async fn facade_get(store: &BlobStore, ctx: &StorageContext, key: &str, size: usize) -> Duration {
    let t = Instant::now();
    let read = store
        .get(ctx, "ns", key, GetOptions::default())
        .await
        .unwrap();
    assert_eq!(drain(read.body).await, size as u64);
    t.elapsed()
}

async fn bench_local(dir: &Path, sizes: &[usize], quick: bool) -> Vec<Row> {
    let counting = Arc::new(CountingAdapter::new(Arc::new(LocalAdapter::new(
        "bench",
        dir.join("facade"),
        Durability::Fsync,
    ))));
    counting.init().await.unwrap();
    let (encrypted, plain) = facades(counting.clone());
    let ctx = StorageContext::new("bench", "bench").unwrap();
    let raw_dir = dir.join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let os_dir = dir.join("object-store");
    std::fs::create_dir_all(&os_dir).unwrap();
    let os_local = object_store::local::LocalFileSystem::new_with_prefix(&os_dir).unwrap();
    // Create the namespace keys outside the timings.
    encrypted
        .put_bytes(&ctx, "ns", "warm-up", "x", PutOptions::default())
        .await
        .unwrap();
    let mut rows = Vec::new();
    for &size in sizes {
        let body = Body::new(size);
        let n = rounds(size, quick);
        let (mut put, mut get) = (Times::default(), Times::default());
        for i in 0..n {
            // Interleave contenders so drift in the machine hits all of them alike.
            let key = format!("k{}", i % 4);
            counting.reset();
            put.encrypted
                .push(facade_put(&encrypted, &ctx, &key, &body).await);
            put.calls += counting.counts().total();
            put.plain
                .push(facade_put(&plain, &ctx, &format!("p{}", i % 4), &body).await);

            let (d, b, name) = (raw_dir.clone(), body.clone(), key.clone());
            let t = Instant::now();
            tokio::task::spawn_blocking(move || raw_file_put(&d, &name, &b))
                .await
                .unwrap();
            put.baseline.push(t.elapsed());

            let path = object_store::path::Path::from(key.clone());
            let t = Instant::now();
            os_local
                .put(&path, PutPayload::from_iter(body.chunks.clone()))
                .await
                .unwrap();
            put.reference.push(t.elapsed());
            // LocalFileSystem does not fsync; flush its file untimed, so that its dirty pages do
            // not land in the next contender's journal commit.
            std::fs::File::open(os_dir.join(&key))
                .unwrap()
                .sync_all()
                .unwrap();

            counting.reset();
            get.encrypted
                .push(facade_get(&encrypted, &ctx, &key, size).await);
            get.calls += counting.counts().total();
            get.plain
                .push(facade_get(&plain, &ctx, &format!("p{}", i % 4), size).await);

            let p = raw_dir.join(&key);
            let t = Instant::now();
            assert_eq!(
                tokio::task::spawn_blocking(move || raw_file_get(&p))
                    .await
                    .unwrap(),
                size as u64
            );
            get.baseline.push(t.elapsed());

            let t = Instant::now();
            let stream = os_local.get(&path).await.unwrap().into_stream();
            let got = drain(
                stream
                    .map(|r| {
                        r.map_err(|e| {
                            sanctum_storage::Error::new(
                                sanctum_storage::ErrorCode::PermanentAdapter,
                                e.to_string(),
                            )
                        })
                    })
                    .boxed(),
            )
            .await;
            assert_eq!(got, size as u64);
            get.reference.push(t.elapsed());
        }
        rows.push(Row::new("put", size, put, n));
        rows.push(Row::new("get", size, get, n));
    }
    rows
}

async fn bench_memory(sizes: &[usize], quick: bool) -> Vec<Row> {
    let counting = Arc::new(CountingAdapter::new(Arc::new(
        ObjectStoreAdapter::in_memory("bench"),
    )));
    let (encrypted, plain) = facades(counting.clone());
    let raw = ObjectStoreAdapter::in_memory("raw");
    let ctx = StorageContext::new("bench", "bench").unwrap();
    encrypted
        .put_bytes(&ctx, "ns", "warm-up", "x", PutOptions::default())
        .await
        .unwrap();
    let mut rows = Vec::new();
    for &size in sizes {
        let body = Body::new(size);
        // Large sizes run fewer rounds: every contender keeps what it writes.
        let n = if size >= 64 * MIB {
            rounds(size, quick)
        } else {
            rounds(size, quick) * 3
        };
        let (mut put, mut get) = (Times::default(), Times::default());
        for i in 0..n {
            let key = format!("k{i}");
            counting.reset();
            put.encrypted
                .push(facade_put(&encrypted, &ctx, &key, &body).await);
            put.calls += counting.counts().total();
            put.plain
                .push(facade_put(&plain, &ctx, &format!("p{i}"), &body).await);
            let path = BlobPath::new(format!("raw/k{i}")).unwrap();
            let t = Instant::now();
            raw.put(&path, body.adapter_stream(), PutMode::Overwrite)
                .await
                .unwrap();
            put.baseline.push(t.elapsed());

            counting.reset();
            get.encrypted
                .push(facade_get(&encrypted, &ctx, &key, size).await);
            get.calls += counting.counts().total();
            get.plain
                .push(facade_get(&plain, &ctx, &format!("p{i}"), size).await);
            let t = Instant::now();
            let got = raw.get(&path, None).await.unwrap();
            assert_eq!(drain(got.body).await, size as u64);
            get.baseline.push(t.elapsed());
        }
        rows.push(Row::new("put", size, put, n));
        rows.push(Row::new("get", size, get, n));
    }
    rows
}

/// An in-memory adapter that drains bodies larger than 1 MiB into a sink instead of storing them
/// (heads and keys are kept): an encrypted put into it measures the facade's own path (hashing
/// and encryption), not object_store's copy of the body into fresh memory.
#[derive(Debug)]
struct DrainAdapter(ObjectStoreAdapter);

#[async_trait::async_trait]
impl BlobAdapter for DrainAdapter {
    fn kind(&self) -> &'static str {
        "drain"
    }
    fn name(&self) -> &str {
        "drain"
    }
    fn capabilities(&self) -> sanctum_storage::adapters::BlobCapabilities {
        self.0.capabilities()
    }
    async fn init(&self) -> sanctum_storage::Result<()> {
        self.0.init().await
    }
    async fn health_check(&self) -> sanctum_storage::Result<()> {
        self.0.health_check().await
    }
    async fn dispose(&self) -> sanctum_storage::Result<()> {
        self.0.dispose().await
    }
    async fn put(
        &self,
        path: &BlobPath,
        mut body: ByteStream,
        mode: PutMode,
    ) -> sanctum_storage::Result<sanctum_storage::adapters::BlobMeta> {
        let mut kept = Vec::new();
        let mut sink = Sink::default();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            sink.take(&chunk);
            if sink.bytes <= MIB as u64 {
                kept.push(chunk);
            }
        }
        let size = sink.finish();
        if size > MIB as u64 {
            return Ok(sanctum_storage::adapters::BlobMeta {
                size,
                etag: "drained".into(),
            });
        }
        self.0
            .put(
                path,
                futures::stream::iter(kept.into_iter().map(Ok)).boxed(),
                mode,
            )
            .await
    }
    async fn get(
        &self,
        path: &BlobPath,
        range: Option<std::ops::Range<u64>>,
    ) -> sanctum_storage::Result<sanctum_storage::adapters::BlobGet> {
        self.0.get(path, range).await
    }
    async fn head(
        &self,
        path: &BlobPath,
    ) -> sanctum_storage::Result<sanctum_storage::adapters::BlobMeta> {
        self.0.head(path).await
    }
    async fn delete(&self, path: &BlobPath, if_match: Option<&str>) -> sanctum_storage::Result<()> {
        self.0.delete(path, if_match).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> sanctum_storage::Result<sanctum_storage::adapters::ListPage> {
        self.0.list(prefix, start_after, limit).await
    }
}

/// Encrypted and plain facade puts of `size` bytes into the [`DrainAdapter`]: (encrypted, plain).
async fn drained_puts(size: usize, rounds: usize) -> (Duration, Duration) {
    let (encrypted, plain) = facades(Arc::new(DrainAdapter(ObjectStoreAdapter::in_memory(
        "drain",
    ))));
    let ctx = StorageContext::new("bench", "bench").unwrap();
    encrypted
        .put_bytes(&ctx, "ns", "warm-up", "x", PutOptions::default())
        .await
        .unwrap();
    let body = Body::new(size);
    let (mut e, mut p) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        e.push(facade_put(&encrypted, &ctx, &format!("e{i}"), &body).await);
        p.push(facade_put(&plain, &ctx, &format!("p{i}"), &body).await);
    }
    (median(&e), median(&p))
}

/// Raw AES-256-GCM on one core (ring), sealing then opening a `total`-byte buffer in place in
/// 16 KiB chunks: the primitive's speed on data that streams through memory, as a body does.
/// Returns (seal, open) MiB/s.
fn raw_aes(total: usize) -> (f64, f64) {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
    let chunk = 16 * KIB;
    let mut buf = vec![0u8; total];
    for (i, piece) in buf.chunks_mut(CHUNK).enumerate() {
        piece.copy_from_slice(&pattern(piece.len(), i as u64));
    }
    let nonce = |i: usize| {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&(i as u64).to_be_bytes());
        Nonce::assume_unique_for_key(n)
    };
    let t = Instant::now();
    let tags: Vec<_> = buf
        .chunks_mut(chunk)
        .enumerate()
        .map(|(i, c)| {
            key.seal_in_place_separate_tag(nonce(i), Aad::empty(), c)
                .unwrap()
        })
        .collect();
    let seal = mbps(total, t.elapsed());
    let t = Instant::now();
    for (i, (c, tag)) in buf.chunks_mut(chunk).zip(&tags).enumerate() {
        black_box(
            key.open_in_place_separate_tag(nonce(i), Aad::empty(), *tag, c, 0..)
                .unwrap(),
        );
    }
    let open = mbps(total, t.elapsed());
    (seal, open)
}

fn bench_blake3(sizes: &[usize]) {
    println!("\n## BLAKE3 alone (the checksum every put computes)");
    println!("| size | MiB/s |");
    println!("|---|---|");
    for &size in sizes {
        let body = Body::new(size);
        let n = (256 * MIB / size.max(1)).clamp(3, 20_000);
        let t = Instant::now();
        for _ in 0..n {
            let mut h = blake3::Hasher::new();
            for c in &body.chunks {
                h.update(c);
            }
            black_box(h.finalize());
        }
        println!(
            "| {} | {:.0} |",
            human(size),
            mbps(size, t.elapsed() / n as u32)
        );
    }
}

/// Small objects under each suite, interleaved round by round on the in-memory backend: the
/// default Cobblestone-256 (0x0001) next to BLAKE3 (0x0003).
async fn bench_suites(quick: bool) {
    use sanctum_crypto::Suite;
    let suites = [Suite::Cobblestone256, Suite::Blake3Aes256Gcm];
    let stores: Vec<BlobStore> = suites
        .iter()
        .map(|&suite| facades_with(Arc::new(ObjectStoreAdapter::in_memory("suite")), suite).0)
        .collect();
    let ctx = StorageContext::new("bench", "bench").unwrap();
    let n = if quick { 2_000 } else { 10_000 };
    let mut put: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut get: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let bytes = pattern(4 * KIB, 9);
    let body = Body::new(4 * KIB);
    let (mut split_put, mut split_get) = (Vec::new(), Vec::new());
    for i in 0..n {
        for (s, store) in stores.iter().enumerate() {
            let key = format!("k{i}");
            // `put_bytes`, as users call it for small values: metadata and body as one message.
            let t = Instant::now();
            store
                .put_bytes(&ctx, "ns", &key, bytes.clone(), PutOptions::default())
                .await
                .unwrap();
            put[s].push(t.elapsed());
            get[s].push(facade_get(store, &ctx, &key, 4 * KIB).await);
        }
        // The layout before combined messages (a streamed put): body and metadata apart.
        let key = format!("split{i}");
        split_put.push(facade_put(&stores[0], &ctx, &key, &body).await);
        split_get.push(facade_get(&stores[0], &ctx, &key, 4 * KIB).await);
    }
    let us = |t: &[Duration]| median(t).as_secs_f64() * 1e6;
    println!(
        "\n## Small objects by suite (in-memory facade, 4 KiB put_bytes and get, medians of {n}, interleaved)"
    );
    println!("| op | 0x0001 Cobblestone-256 (default) | 0x0003 BLAKE3 | 0x0001 costs more by |");
    println!("|---|---|---|---|");
    for (op, times) in [("put", &put), ("get", &get)] {
        let (standard, blake3) = (us(&times[0]), us(&times[1]));
        println!(
            "| {op} | {standard:.1} us | {blake3:.1} us | {:.1} us ({:+.0}%) |",
            standard - blake3,
            100.0 * (standard / blake3 - 1.0)
        );
    }
    println!(
        "0x0001, body and metadata as two messages (a streamed put): put {:.1} us, get {:.1} us",
        us(&split_put),
        us(&split_get)
    );
    for suite in suites {
        let (seal, open) = message_cost_with(300, suite);
        println!(
            "one 300-byte message under {suite:?}: encrypt {:.2} us, decrypt {:.2} us",
            seal.as_secs_f64() * 1e6,
            open.as_secs_f64() * 1e6
        );
    }
}

/// Time of one whole-message encryption and decryption of `size` bytes (key derivation included).
fn message_cost(size: usize) -> (Duration, Duration) {
    message_cost_with(size, sanctum_crypto::Suite::default())
}

/// [`message_cost`] under `suite`.
fn message_cost_with(size: usize, suite: sanctum_crypto::Suite) -> (Duration, Duration) {
    use sanctum_crypto::{Context, DataKey, Header, KeyRef};
    let key = DataKey::from_bytes([3; 32]);
    let ctx = Context {
        tenant: "bench",
        namespace: "ns",
        object_key: "key",
        body_id: "01j0000000000000000000000",
        kind: "blob-body",
    };
    let plain = pattern(size, 5);
    let n = 20_000;
    let t = Instant::now();
    let mut message = Vec::new();
    for _ in 0..n {
        message = sanctum_crypto::encrypt_with_suite(
            suite,
            &key,
            KeyRef {
                key_id: "k".into(),
                epoch: 1,
            },
            &ctx,
            &plain,
        )
        .unwrap();
    }
    let seal = t.elapsed() / n;
    let (header, len) = Header::parse(&message).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        black_box(sanctum_crypto::decrypt(&key, &header, len, &ctx, &message).unwrap());
    }
    (seal, t.elapsed() / n)
}

fn print_crypto(rt: &tokio::runtime::Runtime, memory: &[Row], quick: bool) {
    let total = if quick { 64 * MIB } else { 256 * MIB };
    let (seal, open) = raw_aes(total);
    println!(
        "\n## Encryption against raw AES-256-GCM (ring, one core, 16 KiB chunks, {})",
        human(total)
    );
    println!("raw seal: {seal:.0} MiB/s; raw open: {open:.0} MiB/s");
    println!("| in-memory facade, encrypted | MiB/s | share of raw AES | target |");
    println!("|---|---|---|---|");
    for r in memory.iter().filter(|r| r.size >= MIB) {
        let speed = mbps(r.size, r.encrypted);
        let (raw, target) = if r.op == "get" {
            (open, "70% at 256 MiB")
        } else {
            (seal, "55% at 256 MiB")
        };
        println!(
            "| {} {} | {speed:.0} | {:.0}% | {target} |",
            r.op,
            human(r.size),
            100.0 * speed / raw
        );
    }
    let (e, p) = rt.block_on(drained_puts(total, 5));
    println!(
        "| put {} into a draining adapter (plain facade: {:.0} MiB/s) | {:.0} | {:.0}% | 55% at 256 MiB |",
        human(total),
        mbps(total, p),
        mbps(total, e),
        100.0 * mbps(total, e) / seal
    );
    for size in [300, 4 * KIB] {
        let (seal, open) = message_cost(size);
        println!(
            "one {size}-byte message (key derivation included): encrypt {:.1} us, decrypt {:.1} us",
            seal.as_secs_f64() * 1e6,
            open.as_secs_f64() * 1e6
        );
    }
    for r in memory.iter().filter(|r| r.size <= 4 * KIB) {
        println!(
            "4 KiB {}: encrypted {:.1} us, plain {:.1} us: +{:.0}% (target: at most +50%)",
            r.op,
            r.encrypted.as_secs_f64() * 1e6,
            r.plain.as_secs_f64() * 1e6,
            100.0 * (r.encrypted.as_secs_f64() / r.plain.as_secs_f64() - 1.0)
        );
    }
}

/// Child mode: put and get 256 MiB through the encrypted facade on the local adapter, print
/// peak RSS.
async fn child(dir: PathBuf) {
    let adapter = Arc::new(LocalAdapter::new("rss", dir, Durability::Fsync));
    adapter.init().await.unwrap();
    let (store, _) = facades(adapter);
    let ctx = StorageContext::new("bench", "bench").unwrap();
    let before = peak_rss_kib();
    let chunk = pattern(CHUNK, 1);
    let body = futures::stream::iter(0..(256 * MIB / CHUNK)).map(move |_| Ok(chunk.clone()));
    store
        .put(&ctx, "ns", "big", body, PutOptions::default())
        .await
        .unwrap();
    let read = store
        .get(&ctx, "ns", "big", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(drain(read.body).await, 256 * MIB as u64);
    println!("peak_rss_kib={} baseline_rss_kib={before}", peak_rss_kib());
}

/// Child process: how much one `put_bytes` of a caller's 64 MiB buffer grows the process (peak
/// minus the resident set just before, the buffer already in memory), for sanctum and for
/// object_store's `LocalFileSystem`.
async fn child_put_bytes(dir: PathBuf) {
    let body = pattern(64 * MIB, 7);
    // The peak is reset (Linux `clear_refs` 5) so that each system's growth is its own.
    let growth = |before: u64| peak_rss_kib().saturating_sub(before);
    let adapter = Arc::new(LocalAdapter::new(
        "rss",
        dir.join("sanctum"),
        Durability::Os,
    ));
    adapter.init().await.unwrap();
    let (store, _) = facades(adapter);
    let ctx = StorageContext::new("bench", "bench").unwrap();
    store
        .put_bytes(&ctx, "ns", "warm", "x", PutOptions::default())
        .await
        .unwrap();
    let peer_dir = dir.join("peer");
    std::fs::create_dir_all(&peer_dir).unwrap();
    let peer = object_store::local::LocalFileSystem::new_with_prefix(&peer_dir).unwrap();
    peer.put(
        &object_store::path::Path::from("warm"),
        PutPayload::from_static(b"x"),
    )
    .await
    .unwrap();

    let resettable = reset_peak();
    let before = rss_kib();
    store
        .put_bytes(&ctx, "ns", "big", body.clone(), PutOptions::default())
        .await
        .unwrap();
    let sanctum = growth(before);
    reset_peak();
    let before = rss_kib();
    peer.put(
        &object_store::path::Path::from("big"),
        PutPayload::from(body.clone()),
    )
    .await
    .unwrap();
    let peer = growth(before);
    println!("put_bytes_growth_kib={sanctum} peer_growth_kib={peer} peak_reset={resettable}");
}

fn measure_put_bytes_rss(dir: &Path) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SANCTUM_BENCH_CHILD_PUT_BYTES", dir.join("rss-put-bytes"))
        .output()
        .expect("spawn child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("put_bytes_growth_kib="))
        .unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
    let field = |name: &str| -> f64 {
        line.split(' ')
            .find_map(|f| f.strip_prefix(name))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
            / 1024.0
    };
    println!(
        "\n## Peak memory growth of one put_bytes of a caller's 64 MiB buffer (local, os durability)"
    );
    println!(
        "sanctum (encrypted): {:.1} MiB; object_store LocalFileSystem: {:.1} MiB (target: at most 8 MiB)  [{line}]",
        field("put_bytes_growth_kib="),
        field("peer_growth_kib=")
    );
}

fn measure_child_rss(dir: &Path) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SANCTUM_BENCH_CHILD", dir.join("rss"))
        .output()
        .expect("spawn child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("peak_rss_kib="))
        .unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
    let kib: u64 = line.split(['=', ' ']).nth(1).unwrap().parse().unwrap();
    println!(
        "\n## Peak resident memory: child process putting then getting 256 MiB (local adapter, encrypted facade)"
    );
    println!(
        "{line}  ->  {:.1} MiB (target: under 64 MiB)",
        kib as f64 / 1024.0
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(dir) = std::env::var("SANCTUM_BENCH_CHILD") {
        rt.block_on(child(PathBuf::from(dir)));
        return;
    }
    if let Ok(dir) = std::env::var("SANCTUM_BENCH_CHILD_PUT_BYTES") {
        rt.block_on(child_put_bytes(PathBuf::from(dir)));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench harness probe
    }
    let quick = std::env::var("SANCTUM_BENCH_QUICK").is_ok_and(|v| v == "1");
    let base = std::env::var_os("SANCTUM_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("sanctum-bench-")
        .tempdir_in(base)
        .unwrap();
    let only = std::env::var("SANCTUM_BENCH_ONLY").ok();
    // Profiling loops: SANCTUM_BENCH_ONLY=loop-put or loop-get (encrypted, in memory, 4 KiB);
    // `drain` times 64 MiB puts into the draining adapter; `suites` compares 4 KiB puts and
    // gets under suite 0x0001 and 0x0003;
    // loop-plain-put and loop-plain-get run the same without encryption.
    if let Some(which) = only.as_deref().and_then(|v| v.strip_prefix("loop-")) {
        rt.block_on(async {
            // SANCTUM_BENCH_LOOP_LOCAL=1: over the local adapter (os durability) instead.
            let adapter: Arc<dyn BlobAdapter> = match std::env::var("SANCTUM_BENCH_LOOP_LOCAL") {
                Ok(v) if v == "1" => {
                    let local = LocalAdapter::new("loop", dir.path().join("loop"), Durability::Os);
                    local.init().await.unwrap();
                    Arc::new(local)
                }
                _ => Arc::new(ObjectStoreAdapter::in_memory("loop")),
            };
            let (encrypted, plain) = facades(adapter);
            let (store, which) = match which.strip_prefix("plain-") {
                Some(which) => (plain, which),
                None => (encrypted, which),
            };
            let ctx = StorageContext::new("bench", "bench").unwrap();
            let body = pattern(4 * KIB, 1);
            store
                .put_bytes(&ctx, "ns", "k", body.clone(), PutOptions::default())
                .await
                .unwrap();
            let t = Instant::now();
            for i in 0..20_000 {
                if which == "put" {
                    store
                        .put_bytes(
                            &ctx,
                            "ns",
                            &format!("k{i}"),
                            body.clone(),
                            PutOptions::default(),
                        )
                        .await
                        .unwrap();
                } else {
                    black_box(
                        store
                            .get_bytes(&ctx, "ns", "k", GetOptions::default())
                            .await
                            .unwrap(),
                    );
                }
            }
            println!(
                "{which}: {:.1} us per op",
                t.elapsed().as_secs_f64() * 1e6 / 20_000.0
            );
        });
        return;
    }
    if only.as_deref() == Some("rss-put-bytes") {
        measure_put_bytes_rss(dir.path());
        return;
    }
    if only.as_deref() == Some("suites") {
        rt.block_on(bench_suites(quick));
        return;
    }
    if only.as_deref() == Some("drain") {
        let (e, p) = rt.block_on(drained_puts(64 * MIB, 9));
        let rate = |d: Duration| 64.0 / d.as_secs_f64();
        println!(
            "drained 64 MiB put: encrypted {:.0} MiB/s, plain {:.0} MiB/s",
            rate(e),
            rate(p)
        );
        return;
    }
    if let Some((pair, size)) = only.as_deref().and_then(|v| v.split_once(':')) {
        let size: usize = size.parse().expect("size in bytes");
        let rows = match pair {
            "memory" => rt.block_on(bench_memory(&[size], quick)),
            _ => rt.block_on(bench_local(dir.path(), &[size], quick)),
        };
        print_rows(&format!("{pair} only (profiling)"), "raw", &rows);
        if pair == "memory" {
            print_crypto(&rt, &rows, true);
        }
        return;
    }
    let sizes: Vec<usize> = if quick {
        vec![4 * KIB, MIB]
    } else {
        vec![4 * KIB, MIB, 256 * MIB]
    };
    println!(
        "# sanctum-storage blob benchmark ({} mode; medians; files in {})",
        if quick { "quick" } else { "full" },
        dir.path().display()
    );
    let local = rt.block_on(bench_local(dir.path(), &sizes, quick));
    print_rows(
        "local filesystem, fsync durability",
        "raw file (temp, fsync, rename, dir fsync); reference: object_store LocalFileSystem, no fsync",
        &local,
    );
    let memory = rt.block_on(bench_memory(&sizes, quick));
    print_rows("in-memory", "raw in-memory adapter, same sink", &memory);
    print_crypto(&rt, &memory, quick);
    rt.block_on(bench_suites(quick));
    bench_blake3(&sizes);
    measure_put_bytes_rss(dir.path());
    if !quick {
        measure_child_rss(dir.path());
    }
}
