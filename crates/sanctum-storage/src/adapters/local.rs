//! The local-filesystem adapter: the embedded default.
//!
//! Layout under the root folder:
//! - `objects/<path>=`: one file per object: a 24-byte header (magic `SNB1`, 4 reserved bytes,
//!   a 16-byte random etag) followed by the object's bytes. The etag lives in the file because
//!   inode numbers and coarse mtimes can repeat, and compare-and-swap must never accept a stale tag.
//! - `objects/<dir>/.<id>.tmp`: an object being written. A write streams into a temp file in
//!   the object's own folder (on a blocking thread, fed through a small bounded channel), fsyncs
//!   it, then renames it into place under a lock and fsyncs the folder. A failed or dropped
//!   write removes its temp file; one whose process was killed leaves it behind, and
//!   [`BlobAdapter::sweep_leftovers`] removes it (with any folder that only it kept alive).
//! - `FORMAT`: the layout version; a root written by another layout is refused.
//! - `locks/NN.lock`: 256 lock stripes taken with `File::lock`. The OS releases them when a
//!   process dies, so compare-and-swap is safe across processes, not only across tasks.
//! - `tmp/`: unused; earlier versions wrote health probes (`health-*`) there, which
//!   `sweep_leftovers` removes.
//!
//! Reads (`get`, `head`, `list`) and `health_check` take no lock and open nothing for writing,
//! and `init` of an existing root writes nothing, so a read-only copy of a root (a mounted
//! snapshot or backup) can be read. A write that fails names the file or folder it could not
//! change.
//!
//! Permissions (Unix): every folder this adapter creates is `0700` and every file `0600`,
//! whatever the process's umask (a umask can only narrow them), as PostgreSQL does with its data
//! folder. `init` refuses a root, `objects/` or `locks/` that group or others can write to.
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
    BlobAdapter, BlobCapabilities, BlobGet, BlobMeta, BlobPath, ByteStream, LeftoverReport,
    ListEntry, ListPage, PutMode, check_range, once_stream,
};
use crate::error::{Error, ErrorCode, Result};

const MAGIC: &[u8; 4] = b"SNB1";
/// Appended to every object file name. It cannot occur in a [`BlobPath`], so the file of `a`
/// and the directory of `a/b` never collide.
const FILE_SUFFIX: &str = "=";
const HEADER_LEN: u64 = 24;
/// Read chunk size; also the size up to which a get of a whole object is answered in one piece.
const READ_CHUNK: usize = 1024 * 1024;
/// A ranged get of up to this many bytes is answered with one read.
const ONE_READ_MAX: u64 = 2 * READ_CHUNK as u64;
/// Contents of `<root>/FORMAT`.
const FORMAT: &str = "sanctum-local 1\n";
/// Chunks in flight between the async side and the blocking file thread.
const CHANNEL_DEPTH: usize = 2;
const LOCK_STRIPES: usize = 256;
/// Folders under the root that `init` creates and `health_check` expects.
const SUBFOLDERS: [&str; 2] = ["objects", "locks"];
/// Mode of every folder the adapter creates (Unix).
#[cfg(unix)]
const DIR_MODE: u32 = 0o700;
/// Mode of every file the adapter creates (Unix).
#[cfg(unix)]
const FILE_MODE: u32 = 0o600;

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

/// Like [`io_err`], naming the file or folder: `"{what} {path}: {error kind}"`.
fn io_err_at<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::from_backend_io(e, &format!("{what} {}", path.display()))
}

/// Creates one folder with mode `0700`.
fn make_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir)
}

/// Options that create files with mode `0600`.
fn new_file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
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
        match make_dir(dir) {
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
            create_dirs(dir, fsync).map_err(io_err_at("cannot create the folder", dir))?;
            match new_file_options().write(true).create_new(true).open(tmp) {
                Ok(f) => break f,
                // A concurrent delete removed the emptied folder: create it again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
                Err(e) => return Err(io_err_at("cannot create a temp file in", dir)(e)),
            }
        };
        file.write_all(&header)
            .map_err(io_err_at("cannot write the temp file", tmp))?;
        let mut size = 0u64;
        loop {
            match rx.blocking_recv() {
                Some(WriteMsg::Chunk(bytes)) => {
                    file.write_all(&bytes)
                        .map_err(io_err_at("cannot write the temp file", tmp))?;
                    size += bytes.len() as u64;
                }
                Some(WriteMsg::Finish) => break,
                None => return Err(Error::invalid("write aborted before the body ended")),
            }
        }
        if fsync {
            file.sync_all()
                .map_err(io_err_at("cannot fsync the temp file", tmp))?;
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
        let lock_path = || self.root.join("locks").join(format!("{stripe:02x}.lock"));
        if guard.is_none() {
            let path = lock_path();
            let file = new_file_options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(io_err_at("cannot open the lock file", &path))?;
            *guard = Some(file);
        }
        guard
            .as_ref()
            .expect("opened above")
            .lock()
            .map_err(|e| io_err_at("cannot lock", &lock_path())(e))?;
        Ok(StripeGuard(guard))
    }

    /// Blocking half of a put: checks the mode under the lock and renames the temp file in.
    /// The temp file sits in the target's folder, so the folder cannot vanish meanwhile.
    fn commit(&self, path: &BlobPath, tmp: &Path, mode: &PutMode) -> Result<()> {
        let target = self.object_file(path);
        let _lock = self.lock_stripe(path)?;
        check_mode(current_meta(&target)?.as_ref(), mode)?;
        let dir = target.parent().expect("object files have a parent");
        fs::rename(tmp, &target).map_err(io_err_at("cannot rename a temp file in", dir))?;
        if self.fsync() {
            sync_dir(dir).map_err(io_err_at("cannot fsync the folder", dir))?;
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
        fs::remove_file(&target).map_err(io_err_at("cannot remove", &target))?;
        let objects = self.root.join("objects");
        let mut dir = target.parent().map(Path::to_path_buf);
        if self.fsync()
            && let Some(d) = &dir
        {
            sync_dir(d).map_err(io_err_at("cannot fsync the folder", d))?;
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

/// Refuses a folder that group or others can write to (Unix).
fn check_private(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)
            .map_err(io_err_at("cannot read the folder", dir))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            let who = if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            };
            return Err(Error::config(format!(
                "{} is writable by {who} (mode {:04o}), so others could change the store; run \
                 `chmod 700 {}`",
                dir.display(),
                mode & 0o7777,
                dir.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes the `FORMAT` marker (mode `0600`).
fn write_format(marker: &Path, fsync: bool) -> Result<()> {
    let cannot = || io_err_at("cannot write", marker);
    let mut file = new_file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(marker)
        .map_err(cannot())?;
    file.write_all(FORMAT.as_bytes()).map_err(cannot())?;
    if fsync {
        file.sync_all().map_err(cannot())?;
    }
    Ok(())
}

/// Whether `name` is a write's temp file, `.<id>.tmp` (object files end in `=`, and no path
/// segment starts with `.`).
fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Whether a temp file directly in the folder `rel` (`""`, or ending in `/`) may be a write of
/// a path starting with `prefix`: such writes are of `rel` + one segment.
fn folder_may_hold(rel: &str, prefix: &str) -> bool {
    rel.starts_with(prefix)
        || prefix
            .strip_prefix(rel)
            .is_some_and(|rest| !rest.contains('/'))
}

/// Removes `path` if it is a regular file last written at least `older_than` ago, counting it.
/// Returns whether it removed it.
fn remove_leftover(
    path: &Path,
    now: SystemTime,
    older_than: Duration,
    report: &mut LeftoverReport,
) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err_at("cannot read", path)(e)),
    };
    let old = meta
        .modified()
        .is_ok_and(|t| now.duration_since(t).unwrap_or_default() >= older_than);
    if !meta.is_file() || !old {
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => {
            report.files += 1;
            report.bytes += meta.len();
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err_at("cannot remove the leftover", path)(e)),
    }
}

/// Removes the health probes (`health-*`) earlier versions left in `tmp`.
fn sweep_probes(
    tmp: &Path,
    now: SystemTime,
    older_than: Duration,
    report: &mut LeftoverReport,
) -> Result<()> {
    let read = match fs::read_dir(tmp) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err_at("cannot list the folder", tmp)(e)),
    };
    for entry in read {
        let entry = entry.map_err(io_err_at("cannot list the folder", tmp))?;
        if entry.file_name().to_string_lossy().starts_with("health-") {
            remove_leftover(&entry.path(), now, older_than, report)?;
        }
    }
    Ok(())
}

/// Removes the leftovers in `dir` (the folder `rel` under `objects/`) and below that may belong
/// to paths starting with `prefix`, and the folders they alone kept alive. Returns whether it
/// removed anything.
fn sweep_dir(
    dir: &Path,
    rel: &str,
    prefix: &str,
    now: SystemTime,
    older_than: Duration,
    report: &mut LeftoverReport,
) -> Result<bool> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err_at("cannot list the folder", dir)(e)),
    };
    let files_here = folder_may_hold(rel, prefix);
    let mut removed = false;
    for entry in read {
        let entry = entry.map_err(io_err_at("cannot list the folder", dir))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let is_dir = entry
            .file_type()
            .map_err(io_err_at("cannot list the folder", dir))?
            .is_dir();
        if is_dir {
            let sub_rel = format!("{rel}{name}/");
            if !(sub_rel.starts_with(prefix) || prefix.starts_with(&sub_rel)) {
                continue;
            }
            let sub = entry.path();
            if sweep_dir(&sub, &sub_rel, prefix, now, older_than, report)? {
                removed = true;
                // Fails unless empty. A write that just created the folder creates it again
                // (`write_temp` retries), as it does after a concurrent delete.
                let _ = fs::remove_dir(&sub);
            }
        } else if files_here && is_temp_name(&name) {
            removed |= remove_leftover(&entry.path(), now, older_than, report)?;
        }
    }
    Ok(removed)
}

/// Reads exactly `n` bytes, into a buffer that is not zeroed first.
fn read_chunk(file: &mut File, n: usize) -> Result<Bytes> {
    let mut buf = Vec::with_capacity(n);
    file.take(n as u64)
        .read_to_end(&mut buf)
        .map_err(|e| Error::from_backend_io(e, "read object"))?;
    if buf.len() < n {
        return Err(Error::consistency("object file ended early"));
    }
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
            (false, None) => continue, // not an object file (a temp file, say)
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
        let etag_bytes = crate::observability::clock::fresh_ulid().0.to_be_bytes();
        let mut header = [0u8; HEADER_LEN as usize];
        header[..4].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&etag_bytes);
        let target = self.object_file(path);
        let dir = target.parent().expect("object files have a parent");
        let tmp = TempFile {
            path: dir.join(format!(
                ".{}.tmp",
                crate::observability::clock::fresh_ulid()
            )),
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
            parallel_ranged_reads: true,
            blocking_reads: true,
        }
    }

    /// Creates what is missing (folders `0700`, `FORMAT` `0600`) and checks what is there; an
    /// existing root is only read. Refuses a root, `objects/` or `locks/` that group or others
    /// can write to (`Config`), and a root of another layout version.
    async fn init(&self) -> Result<()> {
        let root = self.root.clone();
        let fsync = self.fsync();
        tokio::task::spawn_blocking(move || {
            if !root.is_dir() {
                let mut builder = fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
                builder
                    .create(&root)
                    .map_err(io_err_at("cannot create the folder", &root))?;
            }
            check_private(&root)?;
            for sub in SUBFOLDERS {
                let dir = root.join(sub);
                if !dir.is_dir() {
                    match make_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(io_err_at("cannot create the folder", &dir)(e)),
                    }
                }
                check_private(&dir)?;
            }
            let marker = root.join("FORMAT");
            match fs::read_to_string(&marker) {
                Ok(found) if found == FORMAT => Ok(()),
                // A write of the marker cut short (or one still under way): write it whole.
                Ok(found) if FORMAT.starts_with(found.as_str()) => write_format(&marker, fsync),
                Ok(_) => Err(Error::config(format!(
                    "{} holds a local store of another layout version; this build reads {:?}",
                    root.display(),
                    FORMAT.trim_end()
                ))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => write_format(&marker, fsync),
                Err(e) => Err(io_err_at("cannot read", &marker)(e)),
            }
        })
        .await
        .map_err(join_err)?
    }

    /// Checks, without writing anything, that the folders are there and listable and that
    /// `FORMAT` reads back: a read-only root is healthy.
    async fn health_check(&self) -> Result<()> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            for sub in SUBFOLDERS {
                let dir = root.join(sub);
                fs::read_dir(&dir).map_err(|e| {
                    Error::new(
                        ErrorCode::PermanentAdapter,
                        format!("cannot list the folder {}: {}", dir.display(), e.kind()),
                    )
                    .with_source(e)
                })?;
            }
            let marker = root.join("FORMAT");
            let found = fs::read_to_string(&marker).map_err(|e| {
                Error::new(
                    ErrorCode::PermanentAdapter,
                    format!("cannot read {}: {}", marker.display(), e.kind()),
                )
                .with_source(e)
            })?;
            if found != FORMAT {
                return Err(Error::new(
                    ErrorCode::PermanentAdapter,
                    format!("{} does not hold {:?}", marker.display(), FORMAT.trim_end()),
                ));
            }
            Ok(())
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
            let (mut file, meta, range) = open_range(file, range)?;
            let len = range.end - range.start;
            if len <= ONE_READ_MAX {
                // A range that fits one read (such as a run of chunks the facade decrypts in
                // place): read here, into a buffer nobody else holds, with no second thread.
                let body = once_stream(read_chunk(&mut file, len as usize)?);
                return Ok(BlobGet { meta, range, body });
            }
            let body = file_stream(file, len);
            Ok(BlobGet { meta, range, body })
        })
        .await
        .map_err(join_err)?
    }

    fn get_blocking(&self, path: &BlobPath, range: Range<u64>) -> Result<(BlobMeta, Bytes)> {
        let file = File::open(self.object_file(path)).map_err(io_err("open object"))?;
        let (mut file, meta, range) = open_range(file, Some(range))?;
        let bytes = read_chunk(&mut file, (range.end - range.start) as usize)?;
        Ok((meta, bytes))
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

    /// Removes temp files (`.<id>.tmp`) older than `older_than` from every folder under
    /// `objects/` that may hold a path starting with `prefix`, then the folders only they kept
    /// alive; and, whatever the prefix, the health probes (`tmp/health-*`) of earlier versions.
    /// Age is the time since the file was last written, so a slow write in progress is not
    /// mistaken for a dead one unless `older_than` is shorter than its pauses.
    async fn sweep_leftovers(&self, prefix: &str, older_than: Duration) -> Result<LeftoverReport> {
        let root = self.root.clone();
        let prefix = prefix.to_string();
        tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            let mut report = LeftoverReport::default();
            sweep_probes(&root.join("tmp"), now, older_than, &mut report)?;
            sweep_dir(
                &root.join("objects"),
                "",
                &prefix,
                now,
                older_than,
                &mut report,
            )?;
            Ok(report)
        })
        .await
        .map_err(join_err)?
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::time::SystemTime;

    use super::*;

    async fn adapter() -> (tempfile::TempDir, LocalAdapter) {
        let dir = tempfile::tempdir().unwrap();
        let adapter = LocalAdapter::new("t", dir.path().join("root"), Durability::Os);
        adapter.init().await.unwrap();
        (dir, adapter)
    }

    fn path(p: &str) -> BlobPath {
        BlobPath::new(p).unwrap()
    }

    async fn put(adapter: &LocalAdapter, p: &str, body: &'static [u8]) {
        let body = once_stream(Bytes::from_static(body));
        adapter
            .put(&path(p), body, PutMode::Overwrite)
            .await
            .unwrap();
    }

    /// Every file and folder under `dir` with its kind, size and modification time.
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (bool, u64, SystemTime)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if meta.is_dir() {
                    stack.push(entry.path());
                }
                out.insert(
                    entry.path(),
                    (meta.is_dir(), meta.len(), meta.modified().unwrap()),
                );
            }
        }
        out
    }

    /// Writes a file whose last change was `age` ago.
    fn leftover(path: &Path, len: usize, age: Duration) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, vec![7u8; len]).unwrap();
        let file = File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }

    #[tokio::test]
    async fn health_check_and_a_second_init_write_nothing() {
        let (dir, adapter) = adapter().await;
        put(&adapter, "t/a/x", b"body").await;
        let before = snapshot(dir.path());
        adapter.health_check().await.unwrap();
        adapter.init().await.unwrap();
        assert_eq!(snapshot(dir.path()), before);
        // Nothing of the layout missing: unhealthy, naming what.
        fs::remove_dir_all(adapter.root().join("locks")).unwrap();
        let err = adapter.health_check().await.unwrap_err();
        assert!(err.to_string().contains("locks"), "{err}");
    }

    #[tokio::test]
    async fn folders_are_0700_and_files_0600() {
        let (dir, adapter) = adapter().await;
        put(&adapter, "t/a/n/x/b/k.k/01", b"body").await;
        adapter
            .delete(&path("t/a/n/x/b/k.k/01"), None)
            .await
            .unwrap();
        put(&adapter, "k/a/tenant", b"record").await;
        for (p, (is_dir, _, _)) in snapshot(dir.path()) {
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, if is_dir { 0o700 } else { 0o600 }, "{}", p.display());
        }
    }

    #[tokio::test]
    async fn init_refuses_a_root_others_can_write() {
        let (_dir, adapter) = adapter().await;
        for (folder, mode) in [
            (adapter.root().to_path_buf(), 0o777),
            (adapter.root().join("objects"), 0o770),
        ] {
            fs::set_permissions(&folder, fs::Permissions::from_mode(mode)).unwrap();
            let err = adapter.init().await.unwrap_err();
            assert_eq!(err.code(), ErrorCode::Config);
            let expected = format!("chmod 700 {}", folder.display());
            assert!(err.to_string().contains(&expected), "{err}");
            fs::set_permissions(&folder, fs::Permissions::from_mode(0o700)).unwrap();
        }
        adapter.init().await.unwrap();
    }

    #[tokio::test]
    async fn failed_writes_name_the_folder() {
        let (_dir, adapter) = adapter().await;
        // A file where a folder should be: creating the folder fails.
        fs::write(adapter.root().join("objects/t"), b"").unwrap();
        let body = once_stream(Bytes::from_static(b"x"));
        let err = adapter
            .put(&path("t/a/x"), body, PutMode::Overwrite)
            .await
            .unwrap_err();
        let folder = adapter.root().join("objects/t/a");
        assert!(
            err.to_string()
                .contains(&format!("cannot create the folder {}", folder.display())),
            "{err}"
        );
    }

    #[tokio::test]
    async fn sweep_leftovers_removes_old_temp_files_under_the_prefix() {
        let (dir, adapter) = adapter().await;
        let root = adapter.root().to_path_buf();
        let objects = root.join("objects");
        let hour = Duration::from_secs(3600);
        put(&adapter, "t/a/n/x/h/k.k", b"head").await;
        put(&adapter, "t/a/policy", b"grants").await;
        let mine = objects.join("t/a/n/x/b/k.k/.01aaaaaaaaaaaaaaaaaaaaaaaa.tmp");
        let mine_head = objects.join("t/a/n/x/h/.01bbbbbbbbbbbbbbbbbbbbbbbb.tmp");
        let young = objects.join("t/a/n/x/h/.01cccccccccccccccccccccccc.tmp");
        let other_ns = objects.join("t/a/n/y/h/.01dddddddddddddddddddddddd.tmp");
        let policy = objects.join("t/a/.01eeeeeeeeeeeeeeeeeeeeeeee.tmp");
        let probe = root.join("tmp/health-01ffffffffffffffffffffffff");
        leftover(&mine, 1000, 2 * hour);
        leftover(&mine_head, 10, 2 * hour);
        leftover(&young, 5, Duration::ZERO);
        leftover(&other_ns, 7, 2 * hour);
        leftover(&policy, 3, 2 * hour);
        leftover(&probe, 2, 2 * hour);
        let before = adapter.list("", None, 100).await.unwrap();

        let report = adapter.sweep_leftovers("t/a/n/x/", hour).await.unwrap();
        assert_eq!(
            report,
            LeftoverReport {
                files: 3,
                bytes: 1012
            }
        );
        assert!(!mine.exists() && !mine_head.exists() && !probe.exists());
        // The folder only the leftover kept alive is gone, with its parent `b/`.
        assert!(!objects.join("t/a/n/x/b").exists());
        assert!(young.exists() && other_ns.exists() && policy.exists());
        assert_eq!(adapter.list("", None, 100).await.unwrap(), before);

        // A path prefix reaches the folder its object lives in, not other namespaces.
        let report = adapter.sweep_leftovers("t/a/policy", hour).await.unwrap();
        assert_eq!(report, LeftoverReport { files: 1, bytes: 3 });
        assert!(other_ns.exists());
        // No grace: everything goes, objects stay.
        let report = adapter.sweep_leftovers("", Duration::ZERO).await.unwrap();
        assert_eq!(
            report,
            LeftoverReport {
                files: 2,
                bytes: 12
            }
        );
        assert_eq!(adapter.list("", None, 100).await.unwrap(), before);
        let names: Vec<_> = snapshot(dir.path())
            .into_keys()
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.ends_with(".tmp") || name.starts_with("health-")
            })
            .collect();
        assert!(names.is_empty(), "{names:?}");
        assert!(!objects.join("t/a/n/y").exists());
    }

    #[test]
    fn folders_that_may_hold_a_prefix() {
        assert!(folder_may_hold("", ""));
        assert!(folder_may_hold("t/a/n/x/b/", "t/a/n/x/"));
        assert!(folder_may_hold("t/a/", "t/a/policy"));
        assert!(folder_may_hold("k/a/n/", "k/a/n/x"));
        assert!(!folder_may_hold("t/a/n/", "t/a/n/x/"));
        assert!(!folder_may_hold("t/a/", "t/a/n/x/"));
        assert!(!folder_may_hold("t/b/", "t/a/"));
    }
}
