//! sanctum-storage against the systems a user would pick instead, on the same disk, in one
//! process, rounds interleaved: sanctum (local backend, encryption on) with `durability = "os"`
//! and `"fsync"`, object_store's `LocalFileSystem` without and with `with_fsync(true)`, OpenDAL's
//! `services-fs` (it syncs on close) and plain `tokio::fs`.
//!
//! Equal work: each put writes a fresh key from one buffer (`put_bytes` for sanctum), each get
//! reads the whole object and touches every byte. Between puts of systems that leave dirty pages,
//! an untimed `sync` writes them back, so no system pays for another's. Peak memory growth of one
//! 64 MiB put from a caller's buffer is measured per system in a child process.
//!
//! Run: `cargo bench -p sanctum-bench --bench peers` (`SANCTUM_BENCH_QUICK=1` for fewer rounds;
//! `SANCTUM_BENCH_DIR=/path` picks the disk; `SANCTUM_BENCH_SIZES=4096,1048576` runs only those
//! sizes; `SANCTUM_BENCH_MEMORY=0` skips the memory child).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStoreExt;
use sanctum_storage::facade::{GetOptions, PutOptions};
use sanctum_storage::{
    Storage, StorageConfig, StorageContext, StorageDependencies, create_storage_client,
};

#[path = "../../sanctum-storage/benches/support/mod.rs"]
mod support;
use support::{KIB, MIB, Sink, human, mbps, median};
#[path = "../../sanctum-storage/benches/support/memory.rs"]
mod memory;

/// The systems compared, in print order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    SanctumOs,
    StoreOs,
    SanctumFsync,
    StoreFsync,
    OpenDal,
    TokioFs,
}

const SYSTEMS: [System; 6] = [
    System::SanctumOs,
    System::StoreOs,
    System::SanctumFsync,
    System::StoreFsync,
    System::OpenDal,
    System::TokioFs,
];

impl System {
    fn name(self) -> &'static str {
        match self {
            System::SanctumOs => "sanctum os",
            System::StoreOs => "object_store LocalFileSystem",
            System::SanctumFsync => "sanctum fsync",
            System::StoreFsync => "object_store with_fsync(true)",
            System::OpenDal => "OpenDAL services-fs",
            System::TokioFs => "tokio::fs",
        }
    }

    /// Whether a put returns before its data is on disk (its dirty pages are written back,
    /// untimed, before the next system runs).
    fn leaves_dirty_pages(self) -> bool {
        matches!(self, System::SanctumOs | System::StoreOs | System::TokioFs)
    }
}

/// One instance of every system, each in its own folder.
struct Systems {
    ctx: StorageContext,
    sanctum_os: Storage,
    sanctum_fsync: Storage,
    store_os: object_store::local::LocalFileSystem,
    store_fsync: object_store::local::LocalFileSystem,
    opendal: opendal::Operator,
    tokio_dir: PathBuf,
}

async fn sanctum(root: &Path, durability: &str) -> Storage {
    let toml = format!(
        "[blob]\nbackend = \"local\"\nroot = \"{}\"\ndurability = \"{durability}\"\n\
         [keys]\nprovider = \"memory\"\n[policy]\nsuperusers = [\"bench\"]\n",
        root.display()
    );
    let config = StorageConfig::from_toml_str(&toml, std::iter::empty::<(&str, &str)>()).unwrap();
    create_storage_client(config, StorageDependencies::default())
        .await
        .unwrap()
}

fn folder(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    path
}

impl Systems {
    async fn new(dir: &Path) -> Self {
        let opendal = opendal::Operator::new(
            opendal::services::Fs::default().root(folder(dir, "opendal").to_str().unwrap()),
        )
        .unwrap();
        Systems {
            ctx: StorageContext::new("bench", "bench").unwrap(),
            sanctum_os: sanctum(&dir.join("sanctum-os"), "os").await,
            sanctum_fsync: sanctum(&dir.join("sanctum-fsync"), "fsync").await,
            store_os: object_store::local::LocalFileSystem::new_with_prefix(folder(dir, "os"))
                .unwrap(),
            store_fsync: object_store::local::LocalFileSystem::new_with_prefix(folder(
                dir, "fsync",
            ))
            .unwrap()
            .with_fsync(true),
            opendal,
            tokio_dir: folder(dir, "tokio"),
        }
    }

    async fn put(&self, system: System, key: &str, body: Bytes) {
        match system {
            System::SanctumOs | System::SanctumFsync => {
                let storage = match system {
                    System::SanctumOs => &self.sanctum_os,
                    _ => &self.sanctum_fsync,
                };
                storage
                    .blobs()
                    .put_bytes(&self.ctx, "ns", key, body, PutOptions::default())
                    .await
                    .unwrap();
            }
            System::StoreOs | System::StoreFsync => {
                let store = match system {
                    System::StoreOs => &self.store_os,
                    _ => &self.store_fsync,
                };
                store
                    .put(&object_store::path::Path::from(key), body.into())
                    .await
                    .unwrap();
            }
            System::OpenDal => {
                self.opendal.write(key, body).await.unwrap();
            }
            System::TokioFs => tokio::fs::write(self.tokio_dir.join(key), body)
                .await
                .unwrap(),
        }
    }

    /// Reads `key` whole; returns how many bytes it had (every byte touched).
    async fn get(&self, system: System, key: &str) -> u64 {
        let mut sink = Sink::default();
        match system {
            System::SanctumOs | System::SanctumFsync => {
                let storage = match system {
                    System::SanctumOs => &self.sanctum_os,
                    _ => &self.sanctum_fsync,
                };
                let read = storage
                    .blobs()
                    .get(&self.ctx, "ns", key, GetOptions::default())
                    .await
                    .unwrap();
                return support::drain(read.body).await;
            }
            System::StoreOs | System::StoreFsync => {
                let store = match system {
                    System::StoreOs => &self.store_os,
                    _ => &self.store_fsync,
                };
                let got = store.get(&object_store::path::Path::from(key)).await;
                sink.take(&got.unwrap().bytes().await.unwrap());
            }
            System::OpenDal => {
                for chunk in self.opendal.read(key).await.unwrap() {
                    sink.take(&chunk);
                }
            }
            System::TokioFs => sink.take(&tokio::fs::read(self.tokio_dir.join(key)).await.unwrap()),
        }
        sink.finish()
    }
}

/// Writes every dirty page back (untimed), so the next system starts clean.
fn sync_disk() {
    std::process::Command::new("sync").status().unwrap();
}

fn rounds(size: usize, quick: bool) -> usize {
    let n: usize = match size {
        s if s <= 4 * KIB => 300,
        s if s <= MIB => 40,
        _ => 6,
    };
    if quick { n.div_ceil(3) } else { n }
}

/// The median put and get times of every system at `size`.
async fn measure(systems: &Systems, size: usize, quick: bool) -> Vec<(Duration, Duration)> {
    let body = sanctum_storage::conformance::pattern(size, 3);
    let mut puts = vec![Vec::new(); SYSTEMS.len()];
    let mut gets = vec![Vec::new(); SYSTEMS.len()];
    for round in 0..rounds(size, quick) {
        // Interleaved: each round runs every system once, in a rotating order.
        for i in 0..SYSTEMS.len() {
            let at = (i + round) % SYSTEMS.len();
            let system = SYSTEMS[at];
            let key = format!("k{size}-{round}");
            let t = Instant::now();
            systems.put(system, &key, body.clone()).await;
            puts[at].push(t.elapsed());
            if system.leaves_dirty_pages() {
                sync_disk();
            }
            let t = Instant::now();
            assert_eq!(systems.get(system, &key).await, size as u64);
            gets[at].push(t.elapsed());
        }
    }
    puts.iter()
        .zip(&gets)
        .map(|(p, g)| (median(p), median(g)))
        .collect()
}

fn rate(size: usize, time: Duration) -> String {
    if size < MIB {
        format!("{:.0} ops/s", 1.0 / time.as_secs_f64())
    } else {
        format!("{:.2} GiB/s", mbps(size, time) / 1024.0)
    }
}

fn print(size: usize, op: &str, times: &[Duration]) {
    let of = |s: System| times[SYSTEMS.iter().position(|&x| x == s).unwrap()];
    let ratio = |a: System, b: System| 100.0 * of(b).as_secs_f64() / of(a).as_secs_f64();
    println!(
        "| {op} | {} | {} | {} | {:.0}% | {} | {} | {:.0}% | {} | {} |",
        human(size),
        rate(size, of(System::SanctumOs)),
        rate(size, of(System::StoreOs)),
        ratio(System::SanctumOs, System::StoreOs),
        rate(size, of(System::SanctumFsync)),
        rate(size, of(System::StoreFsync)),
        ratio(System::SanctumFsync, System::StoreFsync),
        rate(size, of(System::OpenDal)),
        rate(size, of(System::TokioFs)),
    );
}

/// Child process: the peak memory growth of one 64 MiB put from a caller's buffer, per system.
async fn child(dir: PathBuf) {
    let systems = Systems::new(&dir).await;
    let body = sanctum_storage::conformance::pattern(64 * MIB, 3);
    let mut line = String::new();
    for (i, system) in SYSTEMS.into_iter().enumerate() {
        // Warm-up with a 2 MiB put, so thread pools and buffers that every put reuses exist.
        systems.put(system, "warm", body.slice(..2 * MIB)).await;
        assert!(memory::reset_peak(), "the peak cannot be reset here");
        let before = memory::rss_kib();
        systems.put(system, &format!("big{i}"), body.clone()).await;
        let growth = memory::peak_rss_kib().saturating_sub(before);
        line.push_str(&format!("{}={growth} ", i));
    }
    println!("growth_kib {line}");
}

fn print_memory(dir: &Path) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("SANCTUM_PEERS_CHILD", dir.join("rss"))
        .output()
        .expect("spawn child");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("growth_kib "))
        .unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
    println!("\n## Peak memory growth of one 64 MiB put from a caller's buffer");
    println!("| system | MiB |");
    println!("|---|---|");
    for field in line.split_whitespace() {
        let (i, kib) = field.split_once('=').unwrap();
        let system = SYSTEMS[i.parse::<usize>().unwrap()];
        let kib: f64 = kib.parse().unwrap();
        println!("| {} | {:.1} |", system.name(), kib / 1024.0);
    }
}

/// Profiling aid (`SANCTUM_BENCH_HOT_GETS=4096`): gets of one stored object, again and again,
/// per system, with the page cache and the CPU caches warm. Prints the median of each.
async fn hot_gets(size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let systems = Systems::new(dir.path()).await;
    let body = sanctum_storage::conformance::pattern(size, 5);
    for system in SYSTEMS {
        systems.put(system, "hot", body.clone()).await;
    }
    let mut times = vec![Vec::new(); SYSTEMS.len()];
    for _ in 0..2000 {
        for (i, system) in SYSTEMS.into_iter().enumerate() {
            let t = Instant::now();
            assert_eq!(systems.get(system, "hot").await, size as u64);
            times[i].push(t.elapsed());
        }
    }
    for (i, system) in SYSTEMS.into_iter().enumerate() {
        println!("{}: {:?}", system.name(), median(&times[i]));
    }
}

/// Profiling aid (`SANCTUM_BENCH_HOT_PUTS=1048576`): puts of fresh keys, again and again, by
/// the two systems that do not fsync, with an untimed `sync` every 20 rounds. Prints medians.
async fn hot_puts(size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let systems = Systems::new(dir.path()).await;
    let body = sanctum_storage::conformance::pattern(size, 5);
    let hot: Vec<System> = match std::env::var("SANCTUM_BENCH_HOT_ONLY").as_deref() {
        Ok("sanctum") => vec![System::SanctumOs],
        Ok("store") => vec![System::StoreOs],
        _ => vec![System::SanctumOs, System::StoreOs],
    };
    let mut times = vec![Vec::new(); hot.len()];
    let rounds: usize =
        std::env::var("SANCTUM_BENCH_HOT_ROUNDS").map_or(400, |v| v.parse().unwrap());
    for round in 0..rounds {
        if round % 20 == 0 {
            sync_disk();
        }
        for (i, &system) in hot.iter().enumerate() {
            let t = Instant::now();
            systems
                .put(system, &format!("p{round}"), body.clone())
                .await;
            times[i].push(t.elapsed());
        }
    }
    for (i, system) in hot.iter().enumerate() {
        println!("{}: {:?}", system.name(), median(&times[i]));
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(dir) = std::env::var("SANCTUM_PEERS_CHILD") {
        rt.block_on(child(PathBuf::from(dir)));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench harness probe
    }
    if let Ok(size) = std::env::var("SANCTUM_BENCH_HOT_PUTS") {
        rt.block_on(hot_puts(size.parse().unwrap()));
        return;
    }
    if let Ok(size) = std::env::var("SANCTUM_BENCH_HOT_GETS") {
        rt.block_on(hot_gets(size.parse().unwrap()));
        return;
    }
    let quick = std::env::var("SANCTUM_BENCH_QUICK").is_ok_and(|v| v == "1");
    let base = std::env::var_os("SANCTUM_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix("sanctum-peers-")
        .tempdir_in(base)
        .unwrap();
    let systems = rt.block_on(Systems::new(dir.path()));
    println!(
        "# sanctum-storage against its peers ({} mode; medians; files in {})",
        if quick { "quick" } else { "full" },
        dir.path().display()
    );
    println!(
        "ratios: sanctum's throughput relative to object_store in the same durability class (100% = as fast)\n"
    );
    println!(
        "| op | size | sanctum os | LocalFileSystem | ratio | sanctum fsync | LocalFileSystem fsync | ratio | OpenDAL fs | tokio::fs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // `SANCTUM_BENCH_SIZES=4096,1048576` runs only those sizes (for profiling).
    let sizes: Vec<usize> = match std::env::var("SANCTUM_BENCH_SIZES") {
        Ok(list) => list
            .split(",")
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect(),
        Err(_) => vec![4 * KIB, MIB, 64 * MIB],
    };
    for size in sizes {
        let times = rt.block_on(measure(&systems, size, quick));
        let (puts, gets): (Vec<_>, Vec<_>) = times.into_iter().unzip();
        print(size, "put", &puts);
        print(size, "get", &gets);
    }
    if std::env::var("SANCTUM_BENCH_MEMORY").map_or(true, |v| v != "0") {
        print_memory(dir.path());
    }
}
