//! Cloud benchmark: the encrypted facade over the S3 adapter against the same operations done
//! directly with object_store, on the same S3 server in the same run, with ratios and backend
//! calls per operation. Run with the emulator up:
//! `source .ci/emulators.sh && cargo bench -p sanctum-storage --features s3 --bench cloud`.
//!
//! - put: the facade streams the body (sealed chunks; multipart above the part size, parts in
//!   parallel) and writes the head manifest. Raw is one `put` of the whole payload held in
//!   memory ("raw"), and for bodies above the part size also object_store's own streaming upload,
//!   `WriteMultipart` with the same part size and parts in flight ("raw-mp"), which is the same
//!   operation as the facade's. Ratios against both are printed.
//! - get: both drain every byte; the facade decrypts and checks every chunk.
//! - calls/op: adapter calls per facade operation, with the writes (w) and reads (r) among them
//!   (one call is one HTTP request, except that a multipart body is one call of `1 + parts + 1`
//!   requests). Cached keys expire after 30 s, so a long run adds a key-record read now and then.
//!
//! `SANCTUM_BENCH_QUICK=1` runs fewer rounds; `SANCTUM_BENCH_ONLY_SIZE=67108864` one size;
//! `SANCTUM_BENCH_PART_MIB` and `SANCTUM_BENCH_PARTS_IN_FLIGHT` override the multipart settings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sanctum_storage::StorageContext;
use sanctum_storage::adapters::cloud;
use sanctum_storage::conformance::counting::{CallCounts, CountingAdapter};
use sanctum_storage::conformance::{emulators, pattern};
use sanctum_storage::crypto::{KeyManager, MemoryKeyProvider};
use sanctum_storage::facade::{BlobSettings, BlobStore, GetOptions, PutOptions};
use sanctum_storage::observability::audit::MemoryAuditSink;
use sanctum_storage::observability::clock::SystemClock;
use sanctum_storage::policy::AccessSettings;

mod support;

use support::{KIB, MIB, drain, human, mbps, median};

/// Callers hand bodies over in chunks of this size.
const CHUNK: usize = 256 * KIB;

fn chunks(body: &Bytes) -> Vec<Bytes> {
    (0..body.len())
        .step_by(CHUNK)
        .map(|i| body.slice(i..(i + CHUNK).min(body.len())))
        .collect()
}

fn add(sum: &mut CallCounts, c: CallCounts) {
    sum.puts += c.puts;
    sum.gets += c.gets;
    sum.heads += c.heads;
    sum.deletes += c.deletes;
    sum.lists += c.lists;
}

/// "total (writes w, reads r)" per operation.
fn per_op(c: &CallCounts, rounds: usize) -> String {
    let n = rounds as f64;
    format!(
        "{:.1} (w {:.1}, r {:.1})",
        c.total() as f64 / n,
        c.puts as f64 / n,
        (c.gets + c.heads) as f64 / n
    )
}

#[derive(Default)]
struct Times(Vec<Duration>);

impl Times {
    fn median(&self) -> Duration {
        median(&self.0)
    }
}

async fn raw_multipart(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    body: &[Bytes],
    part: usize,
    in_flight: usize,
) {
    let upload = store.put_multipart(path).await.unwrap();
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part);
    for chunk in body {
        writer.wait_for_capacity(in_flight).await.unwrap();
        writer.put(chunk.clone());
    }
    writer.finish().await.unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(mut config) = emulators::s3("bench") else {
        println!("cloud bench skipped: no S3 server (source .ci/emulators.sh first)");
        return;
    };
    let quick = std::env::var("SANCTUM_BENCH_QUICK").as_deref() == Ok("1");
    let env_num = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
    };
    if let Some(mib) = env_num("SANCTUM_BENCH_PART_MIB") {
        config.part_size = (mib * MIB) as u64;
    }
    if let Some(n) = env_num("SANCTUM_BENCH_PARTS_IN_FLIGHT") {
        config.part_concurrency = n;
    }
    let only = env_num("SANCTUM_BENCH_ONLY_SIZE");
    let adapter = cloud::adapter_from_config(&config).unwrap();
    let part_size = adapter.part_size();
    let raw: Arc<dyn ObjectStore> = adapter.store().clone();
    let counting = Arc::new(CountingAdapter::new(Arc::new(adapter.clone())));
    let clock = Arc::new(SystemClock);
    let keys = Arc::new(KeyManager::new(
        Arc::new(MemoryKeyProvider::new()),
        counting.clone(),
        clock.clone(),
    ));
    let facade = BlobStore::new(
        counting.clone(),
        keys,
        clock,
        Arc::new(MemoryAuditSink::default()),
        BlobSettings {
            // Prices encryption: the same path with bodies in the clear (never for data).
            plaintext_for_benchmarks: std::env::var("SANCTUM_BENCH_PLAIN").as_deref() == Ok("1"),
            ..Default::default()
        },
    )
    .with_access(AccessSettings::with_superusers(["bench"]));
    let ctx = StorageContext::new("bench", "bench").unwrap();
    // Creates the tenant and namespace keys, outside the measurements.
    facade
        .put_bytes(&ctx, "ns", "warm-up", "x", PutOptions::default())
        .await
        .unwrap();
    raw.put(&Path::from("raw/warm-up"), PutPayload::from_static(b"x"))
        .await
        .unwrap();

    println!(
        "S3 server: {}",
        std::env::var("AWS_ENDPOINT").unwrap_or_default()
    );
    println!(
        "part size {} bytes, {} parts in flight",
        part_size, config.part_concurrency
    );
    println!(
        "{:<6} {:>7} {:>6} {:>12} {:>12} {:>12} {:>8} {:>8} {:>9}",
        "op",
        "size",
        "rounds",
        "facade MB/s",
        "raw MB/s",
        "raw-mp MB/s",
        "vs raw",
        "vs mp",
        "calls/op"
    );
    for (size, rounds) in [(4 * KIB, 40usize), (MIB, 15), (64 * MIB, 12)] {
        if only.is_some_and(|o| o != size) {
            continue;
        }
        let rounds = if quick {
            rounds.div_ceil(4).max(2)
        } else {
            rounds
        };
        let body = pattern(size, size as u64);
        let parts = chunks(&body);
        let multipart = size > part_size;
        let (mut f_put, mut r_put, mut m_put) =
            (Times::default(), Times::default(), Times::default());
        let (mut f_get, mut r_get) = (Times::default(), Times::default());
        let (mut put_calls, mut get_calls) = (CallCounts::default(), CallCounts::default());
        for i in 0..rounds {
            // Facade put (a fresh key each round, so the head is read, not known).
            let key = format!("s{size}-{i}");
            counting.reset();
            let stream =
                futures::stream::iter(parts.clone().into_iter().map(Ok::<_, std::io::Error>));
            let t = Instant::now();
            facade
                .put(&ctx, "ns", &key, stream, PutOptions::default())
                .await
                .unwrap();
            f_put.0.push(t.elapsed());
            add(&mut put_calls, counting.counts());

            // Raw put: one request with the whole payload.
            let path = Path::from(format!("raw/s{size}-{i}"));
            let payload = PutPayload::from_iter(parts.clone());
            let t = Instant::now();
            raw.put(&path, payload).await.unwrap();
            r_put.0.push(t.elapsed());
            if multipart {
                let mp = Path::from(format!("raw/mp{size}-{i}"));
                let t = Instant::now();
                raw_multipart(&raw, &mp, &parts, part_size, config.part_concurrency).await;
                m_put.0.push(t.elapsed());
            }

            // Reads alternate which goes first, so neither always finds a warmer server.
            for first in [i % 2 == 0, i % 2 != 0] {
                if first {
                    counting.reset();
                    let t = Instant::now();
                    let got = facade
                        .get(&ctx, "ns", &key, GetOptions::default())
                        .await
                        .unwrap();
                    assert_eq!(drain(got.body).await, size as u64);
                    f_get.0.push(t.elapsed());
                    add(&mut get_calls, counting.counts());
                } else {
                    let t = Instant::now();
                    let got = raw.get(&path).await.unwrap();
                    assert_eq!(drain(got.into_stream()).await, size as u64);
                    r_get.0.push(t.elapsed());
                }
            }
        }
        let ratio = |raw: &Times, facade: &Times| match raw.0.is_empty() {
            true => "-".to_string(),
            false => format!(
                "{:.0}%",
                100.0 * raw.median().as_secs_f64() / facade.median().as_secs_f64()
            ),
        };
        let mp = |t: &Times| match t.0.is_empty() {
            true => "-".to_string(),
            false => format!("{:.1}", mbps(size, t.median())),
        };
        println!(
            "{:<6} {:>7} {:>6} {:>12.1} {:>12.1} {:>12} {:>8} {:>8} {:>9}",
            "put",
            human(size),
            rounds,
            mbps(size, f_put.median()),
            mbps(size, r_put.median()),
            mp(&m_put),
            ratio(&r_put, &f_put),
            ratio(&m_put, &f_put),
            per_op(&put_calls, rounds),
        );
        println!(
            "{:<6} {:>7} {:>6} {:>12.1} {:>12.1} {:>12} {:>8} {:>8} {:>9}",
            "get",
            human(size),
            rounds,
            mbps(size, f_get.median()),
            mbps(size, r_get.median()),
            "-",
            ratio(&r_get, &f_get),
            "-",
            per_op(&get_calls, rounds),
        );
    }
    println!(
        "ratios: facade throughput / raw object_store throughput (medians of interleaved rounds); \
         calls/op: adapter calls per facade operation"
    );
}
