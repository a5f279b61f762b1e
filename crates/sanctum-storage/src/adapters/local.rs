//! The local-filesystem adapter: the embedded default.
//!
//! Layout under the root folder:
//! - `objects/<path>=`: one file per object: a 24-byte header (magic `SNB1`, 4 reserved bytes,
//!   a 16-byte random etag) followed by the object's bytes. The etag lives in the file because
//!   inode numbers and coarse mtimes can repeat, and compare-and-swap must never accept a stale tag.
//! - `objects/<dir>/.<id>.tmp`: an object being written. A write streams into a temp file in
//!   the object's own folder (on a blocking thread, fed through a small bounded channel), fsyncs
//!   it, then renames it into place under a lock and fsyncs the folder. Temp files left by a
//!   crash are removed by a later listing of their folder once a day old.
//! - `FORMAT`: the layout version; a root written by another layout is refused.
//! - `locks/NN.lock`: 256 lock stripes taken with `File::lock`. The OS releases them when a
//!   process dies, so compare-and-swap is safe across processes, not only across tasks.
//!
//! Durability [`Durability::Fsync`] (the default) fsyncs the file and its directory before a put
//! returns; [`Durability::Os`] leaves both to the page cache (for tests and benchmarks of it).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{
    BlobAdapter, BlobCapabilities, BlobGet, BlobMeta, BlobPath, ByteStream, ListEntry, ListPage,
    PutMode, check_range, once_stream,
};
use crate::error::{Error, ErrorCode, Result};

const MAGIC: &[u8; 4] = b"SNB1";
/// Appended to every object file name. It cannot occur in a [`BlobPath`], so the file of `a`
/// and the directory of `a/b` never collide.
const FILE_SUFFIX: &str = "=";
const HEADER_LEN: u64 = 24;
/// Read chunk size; also the size up to which a get is answered in one piece.
const READ_CHUNK: usize = 1024 * 1024;
/// Contents of `<root>/FORMAT`.
const FORMAT: &str = "sanctum-local 1\n";
/// Chunks in flight between the async side and the blocking file thread.
const CHANNEL_DEPTH: usize = 4;
const LOCK_STRIPES: usize = 256;
/// Temp files older than this are left-overs of dead processes; listings remove them.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

/// When a local write counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fsync the file and its directory before returning (survives power loss).
    #[default]
    Fsync,
    /// Leave it to the OS page cache (survives a process crash, not a power loss).
    Os,
}

/// Blob adapter over a local folder. See the module docs for the layout.
#[derive(Debug, Clone)]
pub struct LocalAdapter {
    name: String,
    root: PathBuf,
    durability: Durability,
    /// Open lock-stripe files. `flock` excludes other processes; the mutex around each excludes
    /// this process's other threads (they would share the open file, and with it the lock).
    stripes: Arc<Vec<Mutex<Option<File>>>>,
}

/// A held lock stripe: released (both the OS lock and the mutex) on drop.
struct StripeGuard<'a>(MutexGuard<'a, Option<File>>);

impl Drop for StripeGuard<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.0.as_ref() {
            let _ = file.unlock();
        }
    }
}

/// A temp file that is removed on drop unless it was renamed into place.
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl LocalAdapter {
    /// An adapter storing under `root` (created by [`BlobAdapter::init`]).
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>, durability: Durability) -> Self {
        Self {
            name: name.into(),
            root: root.into(),
            durability,
            stripes: Arc::new((0..LOCK_STRIPES).map(|_| Mutex::new(None)).collect()),
        }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_file(&self, path: &BlobPath) -> PathBuf {
        self.root
            .join("objects")
            .join(format!("{path}{FILE_SUFFIX}"))
    }

    fn fsync(&self) -> bool {
        self.durability == Durability::Fsync
    }
}

enum WriteMsg {
    Chunk(Bytes),
    Finish,
}

fn io_err(what: &str) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| Error::from_backend_io(e, what)
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorCode::PermanentAdapter, "local adapter worker failed").with_source(e)
}

use crate::hex::encode as hex;

/// Reads the header of an object file: its etag and body size.
fn read_header(file: &mut File) -> Result<BlobMeta> {
    let len = file.metadata().map_err(io_err("stat object"))?.len();
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::consistency("object file shorter than its header").with_source(e))?;
    if &header[..4] != MAGIC || len < HEADER_LEN {
        return Err(Error::consistency("object file has an unknown header"));
    }
    Ok(BlobMeta {
        size: len - HEADER_LEN,
        etag: hex(&header[8..]),
    })
}

fn current_meta(file: &Path) -> Result<Option<BlobMeta>> {
    match File::open(file) {
        Ok(mut f) => read_header(&mut f).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::from_backend_io(e, "open object")),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, fsyncing the parent of each one created.
fn create_dirs(dir: &Path, fsync: bool) -> io::Result<()> {
    // A concurrent delete may remove an emptied parent between our check and our mkdir: retry.
    let mut attempts = 0;
    loop {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            create_dirs(parent, fsync)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => {
                if fsync && let Some(parent) = dir.parent() {
                    sync_dir(parent)?;
                }
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Blocking half of a put: drains the channel into `tmp`. A channel that closes without
/// `Finish` means the writer was dropped or its body failed: the temp file is removed.
fn write_temp(
    tmp: &Path,
    header: [u8; HEADER_LEN as usize],
    mut rx: mpsc::Receiver<WriteMsg>,
    fsync: bool,
) -> Result<u64> {
    let result = (|| {
        let dir = tmp.parent().expect("temp files have a parent");
        let mut attempts = 0;
        let mut file = loop {
            create_dirs(dir, fsync).map_err(io_err("create directory"))?;
            match OpenOptions::new().write(true).create_new(true).open(tmp) {
                Ok(f) => break f,
                // A concurrent delete removed the emptied folder: create it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(Error::from_backend_io(e, "create temp file")),
            }
        };
        file.write_all(&header).map_err(io_err("write temp file"))?;
        let mut size = 0u64;
        loop {
            match rx.blocking_recv() {
                Some(WriteMsg::Chunk(bytes)) => {
                    file.write_all(&bytes).map_err(io_err("write temp file"))?;
                    size += bytes.len() as u64;
                }
                Some(WriteMsg::Finish) => break,
                None => return Err(Error::invalid("write aborted before the body ended")),
            }
        }
        if fsync {
            file.sync_all().map_err(io_err("fsync temp file"))?;
        }
        Ok(size)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

fn check_mode(current: Option<&BlobMeta>, mode: &PutMode) -> Result<()> {
    match (mode, current) {
        (PutMode::Overwrite, _) | (PutMode::Create, None) => Ok(()),
        (PutMode::Create, Some(_)) => Err(Error::conflict("object already exists")),
        (PutMode::Update(etag), Some(cur)) if &cur.etag == etag => Ok(()),
        (PutMode::Update(_), _) => Err(Error::conflict("object changed since it was read")),
    }
}

impl LocalAdapter {
    /// Takes the lock stripe of `path`, across threads and processes.
    fn lock_stripe(&self, path: &BlobPath) -> Result<StripeGuard<'_>> {
        let stripe = blake3::hash(path.as_str().as_bytes()).as_bytes()[0] as usize % LOCK_STRIPES;
        let mut guard = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(self.root.join("locks").join(format!("{stripe:02x}.lock")))
                .map_err(io_err("open lock file"))?;
            *guard = Some(file);
        }
        guard
            .as_ref()
            .expect("opened above")
            .lock()
            .map_err(io_err("take lock"))?;
        Ok(StripeGuard(guard))
    }

    /// Blocking half of a put: checks the mode under the lock and renames the temp file in.
    /// The temp file sits in the target's folder, so the folder cannot vanish meanwhile.
    fn commit(&self, path: &BlobPath, tmp: &Path, mode: &PutMode) -> Result<()> {
        let target = self.object_file(path);
        let _lock = self.lock_stripe(path)?;
        check_mode(current_meta(&target)?.as_ref(), mode)?;
        fs::rename(tmp, &target).map_err(io_err("rename into place"))?;
        if self.fsync() {
            sync_dir(target.parent().expect("object files have a parent"))
                .map_err(io_err("fsync directory"))?;
        }
        Ok(())
    }

    fn remove(&self, path: &BlobPath, if_match: Option<&str>) -> Result<()> {
        let target = self.object_file(path);
        let _lock = self.lock_stripe(path)?;
        let current = current_meta(&target)?.ok_or_else(|| Error::not_found("no such object"))?;
        if let Some(etag) = if_match
            && current.etag != etag
        {
            return Err(Error::conflict("object changed since it was read"));
        }
        fs::remove_file(&target).map_err(io_err("remove object"))?;
        let objects = self.root.join("objects");
        let mut dir = target.parent().map(Path::to_path_buf);
        if self.fsync()
            && let Some(d) = &dir
        {
            sync_dir(d).map_err(io_err("fsync directory"))?;
        }
        // Remove emptied directories so no trace of a purged key's name stays behind.
        while let Some(d) = dir {
            if d == objects || fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }
}

/// Reads the header of `file` and positions it at the start of `range` (default: everything).
fn open_range(mut file: File, range: Option<Range<u64>>) -> Result<(File, BlobMeta, Range<u64>)> {
    let meta = read_header(&mut file)?;
    let range = range.unwrap_or(0..meta.size);
    check_range(&range, meta.size)?;
    file.seek(SeekFrom::Start(HEADER_LEN + range.start))
        .map_err(io_err("seek object"))?;
    Ok((file, meta, range))
}

/// Streams `len` bytes of `file` from a blocking thread through a bounded channel.
fn file_stream(mut file: File, len: u64) -> ByteStream {
    let (tx, rx) = mpsc::channel::<Result<Bytes>>(CHANNEL_DEPTH);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let n = left.min(READ_CHUNK as u64) as usize;
            let item = read_chunk(&mut file, n);
            let failed = item.is_err();
            if tx.blocking_send(item).is_err() || failed {
                return; // reader dropped, or the error was delivered
            }
            left -= n as u64;
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Removes a temp file a dead writer left behind, once it is a day old.
fn remove_if_stale(path: &Path) {
    let stale = fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > STALE_TMP);
    if stale {
        let _ = fs::remove_file(path);
    }
}

/// Reads exactly `n` bytes.
fn read_chunk(file: &mut File, n: usize) -> Result<Bytes> {
    let mut buf = vec![0u8; n];
    file.read_exact(&mut buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Error::consistency("object file ended early"),
        _ => Error::from_backend_io(e, "read object"),
    })?;
    Ok(Bytes::from(buf))
}

/// Reads a whole small object file in one go: its metadata and its body.
fn read_small(mut file: File, len: u64) -> Result<(BlobMeta, Bytes)> {
    let mut buf = Vec::with_capacity(len as usize);
    // `File::read_to_end` sizes the read from the file length: one read, no zero-filling.
    file.read_to_end(&mut buf).map_err(io_err("read object"))?;
    if buf.len() < HEADER_LEN as usize || &buf[..4] != MAGIC {
        return Err(Error::consistency("object file has an unknown header"));
    }
    let meta = BlobMeta {
        size: buf.len() as u64 - HEADER_LEN,
        etag: hex(&buf[8..HEADER_LEN as usize]),
    };
    Ok((meta, Bytes::from(buf).slice(HEADER_LEN as usize..)))
}

fn walk(
    dir: &Path,
    rel: &str,
    prefix: &str,
    start_after: Option<&str>,
    want: usize,
    out: &mut Vec<ListEntry>,
) -> Result<()> {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::from_backend_io(e, "list directory")),
    };
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(io_err("list directory"))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_dir = entry
            .file_type()
            .map_err(io_err("list directory"))?
            .is_dir();
        let name = match (is_dir, name.strip_suffix(FILE_SUFFIX)) {
            (true, _) => name,
            (false, Some(stem)) => stem.to_string(),
            (false, None) => {
                if name.starts_with('.') && name.ends_with(".tmp") {
                    remove_if_stale(&entry.path());
                }
                continue; // not an object file
            }
        };
        // Sort as full paths sort: a directory's entries all carry a trailing '/'.
        let sort_key = if is_dir {
            format!("{rel}{name}/")
        } else {
            format!("{rel}{name}")
        };
        entries.push((sort_key, is_dir, entry.path()));
    }
    entries.sort();
    for (path, is_dir, abs) in entries {
        if out.len() >= want {
            return Ok(());
        }
        if is_dir {
            let in_prefix = path.starts_with(prefix) || prefix.starts_with(&path);
            let all_before =
                start_after.is_some_and(|sa| sa > path.as_str() && !sa.starts_with(&path));
            if in_prefix && !all_before {
                walk(&abs, &path, prefix, start_after, want, out)?;
            }
        } else if path.starts_with(prefix)
            && start_after.is_none_or(|sa| path.as_str() > sa)
            && let Ok(blob_path) = BlobPath::new(path)
        {
            let size = fs::metadata(&abs)
                .map(|m| m.len().saturating_sub(HEADER_LEN))
                .unwrap_or(0);
            out.push(ListEntry {
                path: blob_path,
                size,
            });
        }
    }
    Ok(())
}

impl LocalAdapter {
    /// Streams `body` into a durable temp file next to the target; returns it and the metadata
    /// the object will have.
    async fn stage(&self, path: &BlobPath, mut body: ByteStream) -> Result<(TempFile, BlobMeta)> {
        let etag_bytes = ulid::Ulid::new().0.to_be_bytes();
        let mut header = [0u8; HEADER_LEN as usize];
        header[..4].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&etag_bytes);
        let target = self.object_file(path);
        let dir = target.parent().expect("object files have a parent");
        let tmp = TempFile {
            path: dir.join(format!(".{}.tmp", ulid::Ulid::new())),
            armed: true,
        };
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let fsync = self.fsync();
        let tmp_path = tmp.path.clone();
        let writer = tokio::task::spawn_blocking(move || write_temp(&tmp_path, header, rx, fsync));
        let pumped: Result<()> = async {
            while let Some(chunk) = body.next().await {
                if tx.send(WriteMsg::Chunk(chunk?)).await.is_err() {
                    return Ok(()); // the writer failed; its error is reported below
                }
            }
            let _ = tx.send(WriteMsg::Finish).await;
            Ok(())
        }
        .await;
        drop(tx);
        let written = writer.await.map_err(join_err)?;
        pumped?;
        let size = written?;
        Ok((
            tmp,
            BlobMeta {
                size,
                etag: hex(&etag_bytes),
            },
        ))
    }

    /// Commits a staged temp file under `mode`.
    async fn finish(&self, path: &BlobPath, mut tmp: TempFile, mode: PutMode) -> Result<()> {
        let this = self.clone();
        let path = path.clone();
        let tmp_path = tmp.path.clone();
        let committed = tokio::task::spawn_blocking(move || this.commit(&path, &tmp_path, &mode))
            .await
            .map_err(join_err)?;
        if committed.is_ok() {
            tmp.armed = false;
        }
        committed
    }
}

#[async_trait]
impl BlobAdapter for LocalAdapter {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> BlobCapabilities {
        BlobCapabilities {
            conditional_create: true,
            conditional_update: true,
            atomic_conditional_delete: true,
            durable: self.fsync(),
            persistent: true,
        }
    }

    async fn init(&self) -> Result<()> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            for sub in ["objects", "tmp", "locks"] {
                fs::create_dir_all(root.join(sub)).map_err(io_err("create root folder"))?;
            }
            let marker = root.join("FORMAT");
            match fs::read_to_string(&marker) {
                Ok(found) if found == FORMAT => Ok(()),
                Ok(_) => Err(Error::config(format!(
                    "{} holds a local store of another layout version; this build reads {:?}",
                    root.display(),
                    FORMAT.trim_end()
                ))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::write(&marker, FORMAT).map_err(io_err("write FORMAT marker"))
                }
                Err(e) => Err(Error::from_backend_io(e, "read FORMAT marker")),
            }
        })
        .await
        .map_err(join_err)?
    }

    async fn health_check(&self) -> Result<()> {
        let probe = self
            .root
            .join("tmp")
            .join(format!("health-{}", ulid::Ulid::new()));
        tokio::task::spawn_blocking(move || {
            fs::write(&probe, b"ok").map_err(io_err("write health probe"))?;
            fs::remove_file(&probe).map_err(io_err("remove health probe"))
        })
        .await
        .map_err(join_err)?
    }

    async fn dispose(&self) -> Result<()> {
        Ok(())
    }

    async fn put(&self, path: &BlobPath, body: ByteStream, mode: PutMode) -> Result<BlobMeta> {
        let (tmp, meta) = self.stage(path, body).await?;
        self.finish(path, tmp, mode).await?;
        Ok(meta)
    }

    /// Writes and fsyncs the temp file while `ready` is pending, so the two overlap; commits once
    /// it resolves.
    async fn put_after(
        &self,
        path: &BlobPath,
        body: ByteStream,
        mode: PutMode,
        ready: BoxFuture<'static, Result<()>>,
    ) -> Result<BlobMeta> {
        let (staged, ready) = futures::join!(self.stage(path, body), ready);
        let (tmp, meta) = staged?;
        ready?; // dropping `tmp` removes the temp file
        self.finish(path, tmp, mode).await?;
        Ok(meta)
    }

    async fn get(&self, path: &BlobPath, range: Option<Range<u64>>) -> Result<BlobGet> {
        let this = self.clone();
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let file = File::open(this.object_file(&path)).map_err(io_err("open object"))?;
            let file_len = file.metadata().map_err(io_err("stat object"))?.len();
            if file_len <= HEADER_LEN + READ_CHUNK as u64 {
                // Small objects (such as head manifests): one read, then slice the range.
                let (meta, bytes) = read_small(file, file_len)?;
                let range = range.unwrap_or(0..meta.size);
                check_range(&range, meta.size)?;
                let body = once_stream(bytes.slice(range.start as usize..range.end as usize));
                return Ok(BlobGet { meta, range, body });
            }
            let (file, meta, range) = open_range(file, range)?;
            let body = file_stream(file, range.end - range.start);
            Ok(BlobGet { meta, range, body })
        })
        .await
        .map_err(join_err)?
    }

    async fn head(&self, path: &BlobPath) -> Result<BlobMeta> {
        let file = self.object_file(path);
        tokio::task::spawn_blocking(move || {
            current_meta(&file)?.ok_or_else(|| Error::not_found("no such object"))
        })
        .await
        .map_err(join_err)?
    }

    async fn delete(&self, path: &BlobPath, if_match: Option<&str>) -> Result<()> {
        let this = self.clone();
        let path = path.clone();
        let if_match = if_match.map(str::to_string);
        tokio::task::spawn_blocking(move || this.remove(&path, if_match.as_deref()))
            .await
            .map_err(join_err)?
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let objects = self.root.join("objects");
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(
                &objects,
                "",
                &prefix,
                start_after.as_deref(),
                limit + 1,
                &mut out,
            )?;
            let more = out.len() > limit;
            out.truncate(limit);
            Ok(ListPage { entries: out, more })
        })
        .await
        .map_err(join_err)?
    }
}
