//! Blob benchmark: the facade against raw baselines in the same run, with ratios and backend
//! calls per operation. Run: `cargo bench -p sanctum-storage --bench blob`.
//!
//! Environment: `SANCTUM_BENCH_DIR` (folder for files; default: the system temp dir),
//! `SANCTUM_BENCH_QUICK=1` (fewer iterations, no 256 MiB rows; for smoke runs).
//!
//! - local: facade over the local adapter (fsync durability) vs a raw file with the same
//!   durability (temp file written from the same chunks, fsynced, renamed, directory fsynced; read
//!   back in 256 KiB chunks), plus object_store's `LocalFileSystem` (no fsync) for reference.
//! - memory: facade over the in-memory adapter vs the raw in-memory adapter; both write fresh
//!   objects and keep them, and both drain every byte into the same sink.
//! - BLAKE3 alone, and the peak resident memory of a child process that puts and gets 256 MiB.

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
use sanctum_storage::facade::{BlobSettings, BlobStore, GetOptions, PutOptions};
use sanctum_storage::observability::audit::MemoryAuditSink;
use sanctum_storage::observability::clock::SystemClock;

const CHUNK: usize = 256 * 1024;
const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

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

/// Where read bytes go: every byte is touched, so nothing is optimised away.
#[derive(Default)]
struct Sink {
    bytes: u64,
    check: u8,
}

impl Sink {
    fn take(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        self.check ^= chunk.iter().fold(0u8, |a, b| a ^ b);
    }
}

async fn drain(mut body: ByteStream) -> u64 {
    let mut sink = Sink::default();
    while let Some(chunk) = body.next().await {
        sink.take(&chunk.expect("read"));
    }
    black_box(sink.check);
    sink.bytes
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
    black_box(sink.check);
    sink.bytes
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Row {
    pair: &'static str,
    op: &'static str,
    size: usize,
    facade: Duration,
    baseline: Duration,
    reference: Option<Duration>,
    calls: f64,
}

fn mbps(size: usize, d: Duration) -> f64 {
    size as f64 / MIB as f64 / d.as_secs_f64()
}

fn human(size: usize) -> String {
    if size >= MIB {
        format!("{} MiB", size / MIB)
    } else {
        format!("{} KiB", size / KIB)
    }
}

fn print_rows(title: &str, baseline: &str, reference: Option<&str>, rows: &[Row]) {
    println!(
        "\n## {title}  (facade vs {baseline}{})",
        reference
            .map(|r| format!("; reference: {r}"))
            .unwrap_or_default()
    );
    println!(
        "| op | size | facade MiB/s | facade ops/s | baseline MiB/s | ratio (facade/baseline) | {} backend calls/op |",
        if reference.is_some() {
            "reference MiB/s |"
        } else {
            ""
        }
    );
    println!(
        "|---|---|---|---|---|---|{}---|",
        if reference.is_some() { "---|" } else { "" }
    );
    for r in rows {
        let reference = match r.reference {
            Some(d) => format!(" {:.1} |", mbps(r.size, d)),
            None if reference.is_some() => " - |".to_string(),
            None => String::new(),
        };
        println!(
            "| {} {} | {} | {:.1} | {:.0} | {:.1} | {:.1}% |{} {:.1} |",
            r.pair,
            r.op,
            human(r.size),
            mbps(r.size, r.facade),
            1.0 / r.facade.as_secs_f64(),
            mbps(r.size, r.baseline),
            100.0 * r.baseline.as_secs_f64() / r.facade.as_secs_f64(),
            reference,
            r.calls
        );
    }
}

fn iterations(size: usize, quick: bool) -> usize {
    match (size, quick) {
        (s, _) if s >= 64 * MIB => 5,
        (s, true) if s >= MIB => 5,
        (s, false) if s >= MIB => 30,
        (_, true) => 30,
        _ => 300,
    }
}

/// A full read without the BLAKE3 re-hash (the default verifies).
fn unverified() -> GetOptions {
    GetOptions {
        skip_checksum: true,
        ..Default::default()
    }
}

fn facade(adapter: Arc<dyn BlobAdapter>) -> BlobStore {
    BlobStore::new(
        adapter,
        Arc::new(SystemClock),
        Arc::new(MemoryAuditSink::default()),
        BlobSettings::default(),
    )
}

async fn bench_local(dir: &Path, sizes: &[usize], quick: bool) -> Vec<Row> {
    let counting = Arc::new(CountingAdapter::new(Arc::new(LocalAdapter::new(
        "bench",
        dir.join("facade"),
        Durability::Fsync,
    ))));
    counting.init().await.unwrap();
    let store = facade(counting.clone());
    let ctx = StorageContext::new("bench", "bench").unwrap();
    let raw_dir = dir.join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();
    let os_dir = dir.join("object-store");
    std::fs::create_dir_all(&os_dir).unwrap();
    let os_local = object_store::local::LocalFileSystem::new_with_prefix(&os_dir).unwrap();
    let mut rows = Vec::new();
    for &size in sizes {
        let body = Body::new(size);
        let n = iterations(size, quick);
        let (mut fp, mut bp, mut rp, mut fg, mut bg, mut rg) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut fgu = vec![];
        let (mut put_calls, mut get_calls) = (0, 0);
        for i in 0..n {
            // Interleave contenders so drift in the machine hits all of them alike.
            let key = format!("k{}", i % 4);
            counting.reset();
            let t = Instant::now();
            store
                .put(&ctx, "ns", &key, body.stream(), PutOptions::default())
                .await
                .unwrap();
            fp.push(t.elapsed());
            put_calls += counting.counts().total();

            let name = format!("k{}", i % 4);
            let (d, b) = (raw_dir.clone(), body.clone());
            let t = Instant::now();
            tokio::task::spawn_blocking(move || raw_file_put(&d, &name, &b))
                .await
                .unwrap();
            bp.push(t.elapsed());

            let payload = PutPayload::from_iter(body.chunks.clone());
            let path = object_store::path::Path::from(format!("k{}", i % 4));
            let t = Instant::now();
            os_local.put(&path, payload).await.unwrap();
            rp.push(t.elapsed());
            // LocalFileSystem does not fsync; flush its file untimed, so that its dirty pages do
            // not land in the next contender's journal commit.
            std::fs::File::open(os_dir.join(format!("k{}", i % 4)))
                .unwrap()
                .sync_all()
                .unwrap();

            counting.reset();
            let t = Instant::now();
            let read = store
                .get(&ctx, "ns", &key, GetOptions::default())
                .await
                .unwrap();
            assert_eq!(drain(read.body).await, size as u64);
            fg.push(t.elapsed());
            get_calls += counting.counts().total();

            let t = Instant::now();
            let read = store.get(&ctx, "ns", &key, unverified()).await.unwrap();
            assert_eq!(drain(read.body).await, size as u64);
            fgu.push(t.elapsed());

            let p = raw_dir.join(format!("k{}", i % 4));
            let t = Instant::now();
            let got = tokio::task::spawn_blocking(move || raw_file_get(&p))
                .await
                .unwrap();
            assert_eq!(got, size as u64);
            bg.push(t.elapsed());

            let t = Instant::now();
            let got = os_local.get(&path).await.unwrap().into_stream();
            let got = drain(
                got.map(|r| {
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
            rg.push(t.elapsed());
        }
        rows.push(Row {
            pair: "local",
            op: "put",
            size,
            facade: median(fp),
            baseline: median(bp),
            reference: Some(median(rp)),
            calls: put_calls as f64 / n as f64,
        });
        let (bg, rg) = (median(bg), Some(median(rg)));
        rows.push(Row {
            pair: "local",
            op: "get",
            size,
            facade: median(fg),
            baseline: bg,
            reference: rg,
            calls: get_calls as f64 / n as f64,
        });
        rows.push(Row {
            pair: "local",
            op: "get (skip_checksum)",
            size,
            facade: median(fgu),
            baseline: bg,
            reference: rg,
            calls: get_calls as f64 / n as f64,
        });
    }
    rows
}

/// Writes a buffer larger than the CPU caches.
fn scrub_caches(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate().step_by(64) {
        *b = b.wrapping_add(i as u8);
    }
    black_box(&buf);
}

async fn bench_memory(sizes: &[usize], quick: bool) -> Vec<Row> {
    let counting = Arc::new(CountingAdapter::new(Arc::new(
        ObjectStoreAdapter::in_memory("bench"),
    )));
    let store = facade(counting.clone());
    let raw = ObjectStoreAdapter::in_memory("raw");
    let ctx = StorageContext::new("bench", "bench").unwrap();
    let mut scrub = vec![0u8; 64 * MIB];
    let mut rows = Vec::new();
    for &size in sizes {
        let body = Body::new(size);
        // Both sides keep every object they write (the facade keeps every version), so the
        // allocator treats them alike; large sizes run fewer rounds to bound memory.
        let n = if size >= 64 * MIB {
            iterations(size, quick)
        } else {
            iterations(size, quick) * 3
        };
        let (mut fp, mut bp, mut fg, mut bg, mut fgu) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut put_calls, mut get_calls) = (0, 0);
        for i in 0..n {
            let key = format!("k{}", i % 4);
            counting.reset();
            let t = Instant::now();
            store
                .put(&ctx, "ns", &key, body.stream(), PutOptions::default())
                .await
                .unwrap();
            fp.push(t.elapsed());
            put_calls += counting.counts().total();

            let path = BlobPath::new(format!("raw/k{i}")).unwrap();
            let t = Instant::now();
            raw.put(&path, body.adapter_stream(), PutMode::Overwrite)
                .await
                .unwrap();
            bp.push(t.elapsed());

            // Evict the CPU caches before each read, so no contender reads what the previous
            // one left hot.
            scrub_caches(&mut scrub);
            counting.reset();
            let t = Instant::now();
            let read = store
                .get(&ctx, "ns", &key, GetOptions::default())
                .await
                .unwrap();
            assert_eq!(drain(read.body).await, size as u64);
            fg.push(t.elapsed());
            get_calls += counting.counts().total();

            scrub_caches(&mut scrub);
            let t = Instant::now();
            let read = store.get(&ctx, "ns", &key, unverified()).await.unwrap();
            assert_eq!(drain(read.body).await, size as u64);
            fgu.push(t.elapsed());

            scrub_caches(&mut scrub);
            let t = Instant::now();
            let got = raw.get(&path, None).await.unwrap();
            assert_eq!(drain(got.body).await, size as u64);
            bg.push(t.elapsed());
        }
        rows.push(Row {
            pair: "memory",
            op: "put",
            size,
            facade: median(fp),
            baseline: median(bp),
            reference: None,
            calls: put_calls as f64 / n as f64,
        });
        let bg = median(bg);
        rows.push(Row {
            pair: "memory",
            op: "get",
            size,
            facade: median(fg),
            baseline: bg,
            reference: None,
            calls: get_calls as f64 / n as f64,
        });
        rows.push(Row {
            pair: "memory",
            op: "get (skip_checksum)",
            size,
            facade: median(fgu),
            baseline: bg,
            reference: None,
            calls: get_calls as f64 / n as f64,
        });
    }
    rows
}

fn bench_blake3(sizes: &[usize]) {
    println!(
        "\n## BLAKE3 alone (the checksum every put computes and every full unencrypted get verifies)"
    );
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

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child mode: put and get 256 MiB through the facade on the local adapter, print peak RSS.
async fn child(dir: PathBuf) {
    let adapter = Arc::new(LocalAdapter::new("rss", dir, Durability::Fsync));
    adapter.init().await.unwrap();
    let store = facade(adapter);
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
        "\n## Peak resident memory, child process putting then getting 256 MiB (local adapter, facade)"
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
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench harness probe
    }
    let quick = std::env::var("SANCTUM_BENCH_QUICK").is_ok_and(|v| v == "1");
    let base = std::env::var_os("SANCTUM_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    // One pair and size, for profiling: SANCTUM_BENCH_ONLY=memory:4096 or local:1048576.
    let only = std::env::var("SANCTUM_BENCH_ONLY").ok();
    if let Some((pair, size)) = only.as_deref().and_then(|v| v.split_once(':')) {
        let size: usize = size.parse().expect("size in bytes");
        let dir = tempfile::tempdir_in(&base).unwrap();
        let rows = match pair {
            "memory" => rt.block_on(bench_memory(&[size], quick)),
            _ => rt.block_on(bench_local(dir.path(), &[size], quick)),
        };
        print_rows(&format!("{pair} only (profiling)"), "baseline", None, &rows);
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("sanctum-bench-")
        .tempdir_in(base)
        .unwrap();
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
        "raw file (temp, fsync, rename, dir fsync)",
        Some("object_store LocalFileSystem, no fsync"),
        &local,
    );
    let memory = rt.block_on(bench_memory(&sizes, quick));
    print_rows(
        "in-memory",
        "raw in-memory adapter, same sink",
        None,
        &memory,
    );
    bench_blake3(&sizes);
    if !quick {
        measure_child_rss(dir.path());
    }
}
