//! `sanctum blob ...`: the blob commands.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use sanctum_storage::facade::{BlobRead, ByteRange, GetOptions, ListOptions, PutOptions};
use sanctum_storage::{Error, ErrorCode, ObjectVersion};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::Session;
use crate::cli::{BlobCommand, GetArgs, KeyArgs, LsArgs, PutArgs, RestoreArgs, SweepArgs};
use crate::output::{self, UsageError};
use crate::progress;

/// Runs one blob command.
pub async fn run(session: &Session, cmd: BlobCommand) -> anyhow::Result<()> {
    match cmd {
        BlobCommand::Put(args) => put(session, args).await,
        BlobCommand::Get(args) => get(session, args).await,
        BlobCommand::Head(args) => head(session, args).await,
        BlobCommand::Ls(args) => ls(session, args).await,
        BlobCommand::Rm(args) => rm(session, args).await,
        BlobCommand::Versions(args) => versions(session, args).await,
        BlobCommand::Restore(args) => restore(session, args).await,
        BlobCommand::Purge(args) => purge(session, args).await,
        BlobCommand::Sweep(args) => sweep(session, args).await,
    }
}

/// An `invalid_input` error.
fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

/// Prints a version: the whole JSON document, or `version <id> size <n> checksum <c>`.
fn print_version(session: &Session, label: &str, v: &ObjectVersion) -> anyhow::Result<()> {
    if session.json {
        return output::json(v);
    }
    let mut text = format!("{label} {}", v.version_id);
    if !v.tombstone {
        text.push_str(&format!(" size {} checksum {}", v.size, v.checksum));
    }
    if let Some(from) = &v.restored_from {
        text.push_str(&format!(" restored-from {from}"));
    }
    output::line(text)
}

/// Where a put reads its body from.
enum Input {
    Stdin,
    File(tokio::fs::File),
}

/// Opens the input file of a put; a missing or unreadable file is `invalid_input`.
async fn open_input(path: &Path) -> anyhow::Result<tokio::fs::File> {
    let cannot = |why: String| {
        invalid(format!(
            "cannot read the input file {}: {why}",
            path.display()
        ))
    };
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| cannot(e.to_string()).with_source(e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| cannot(e.to_string()).with_source(e))?;
    if meta.is_dir() {
        return Err(cannot("it is a directory".into()).into());
    }
    Ok(file)
}

/// `blob put NS KEY [FILE|-]`: streams the body, never holding it whole in memory.
async fn put(session: &Session, args: PutArgs) -> anyhow::Result<()> {
    let mut metadata = BTreeMap::new();
    for (k, v) in args.meta {
        if metadata.contains_key(&k) {
            return Err(UsageError(format!("--meta {k} given more than once")).into());
        }
        metadata.insert(k, v);
    }
    let opts = PutOptions {
        if_match: args.if_match,
        if_none_match: args.if_none_match,
        content_type: args.content_type,
        metadata,
    };
    // Open the input before connecting: a missing file fails without touching storage.
    let input = match args.file.as_deref() {
        // A forgotten FILE must not silently read the terminal (and store what is typed, or
        // an empty object when the user gives up).
        None if std::io::stdin().is_terminal() => {
            return Err(UsageError(format!(
                "no FILE given, and stdin is a terminal: name the file to store (`sanctum blob \
                 put {ns} {key} ./file`), or pass `-` to read stdin",
                ns = args.target.ns,
                key = args.target.key
            ))
            .into());
        }
        None => Input::Stdin,
        Some(p) if p == Path::new("-") => Input::Stdin,
        Some(p) => Input::File(open_input(p).await?),
    };
    let KeyArgs { ns, key } = &args.target;
    let version = session
        .with_storage(async |storage| {
            let blobs = storage.blobs();
            let version = match input {
                Input::Stdin => {
                    blobs
                        .put_reader(&session.ctx, ns, key, tokio::io::stdin(), opts)
                        .await?
                }
                Input::File(file) => {
                    let len = file.metadata().await.map(|m| m.len()).ok();
                    let bar = progress::bar(len, "stored");
                    let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
                        .inspect(move |chunk| {
                            if let (Some(bar), Ok(chunk)) = (&bar, chunk) {
                                bar.inc(chunk.len() as u64);
                            }
                        });
                    blobs.put(&session.ctx, ns, key, body, opts).await?
                }
            };
            Ok(version)
        })
        .await?;
    print_version(session, "version", &version)
}

/// `blob get NS KEY`: the body to stdout, or atomically to `-o FILE`.
async fn get(session: &Session, args: GetArgs) -> anyhow::Result<()> {
    if session.json && args.output.is_none() {
        return Err(UsageError(
            "get --json needs -o FILE: the body cannot share stdout with the JSON document".into(),
        )
        .into());
    }
    let range = args.range.as_deref().map(ByteRange::from_str).transpose()?;
    // Full reads are verified against the checksum (the library's default).
    let opts = GetOptions {
        version: args.version_id,
        range,
        ..GetOptions::default()
    };
    let KeyArgs { ns, key } = &args.target;
    session
        .with_storage(async |storage| {
            let BlobRead { version, range, body } = storage.blobs().get(&session.ctx, ns, key, opts).await?;
            let Some(path) = &args.output else { return copy_to_stdout(body).await };
            let bar = progress::bar(Some(range.end - range.start), "read");
            write_output(path, body, bar.as_ref()).await?;
            if session.json {
                output::json(&json!({ "version": version, "range": { "start": range.start, "end": range.end } }))
            } else {
                output::line(format_args!(
                    "version {} {} of {} written to {}",
                    version.version_id,
                    describe_range(&range),
                    version.size,
                    path.display()
                ))
            }
        })
        .await
}

/// A half-open range as people read it: `bytes 16399-16401` (inclusive), or `0 bytes`.
fn describe_range(range: &std::ops::Range<u64>) -> String {
    if range.end > range.start {
        format!("bytes {}-{}", range.start, range.end - 1)
    } else {
        "0 bytes".to_string()
    }
}

/// Milliseconds since the epoch as an RFC 3339 time (UTC, millisecond precision).
fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Streams a body to stdout chunk by chunk.
async fn copy_to_stdout(mut body: sanctum_storage::adapters::ByteStream) -> anyhow::Result<()> {
    let mut out = tokio::io::stdout();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?).await.context("writing to stdout")?;
    }
    out.flush().await.context("writing to stdout")
}

/// Removes a temporary file when dropped, unless disarmed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes a body to `path` atomically: into `.NAME.sanctum-tmp-<pid>` next to it, fsynced, then
/// renamed over `path` only once the stream ended cleanly (a full read ends in an error on a
/// checksum mismatch). On any failure the temporary file is removed and `path` is untouched.
async fn write_output(
    path: &Path,
    mut body: sanctum_storage::adapters::ByteStream,
    bar: Option<&indicatif::ProgressBar>,
) -> anyhow::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        invalid(format!(
            "the output path {} does not name a file",
            path.display()
        ))
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp_path = dir.join(format!(
        ".{}.sanctum-tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover with our pid can only come from a dead process that had the same pid.
    let _ = std::fs::remove_file(&tmp_path);
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp_path)
        .await
        .map_err(|e| {
            invalid(format!(
                "cannot create a file next to {}: {e}",
                path.display()
            ))
            .with_source(e)
        })?;
    let mut guard = TempFile(Some(tmp_path.clone()));
    let writing = || format!("writing {}", tmp_path.display());
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        file.write_all(&chunk).await.with_context(writing)?;
        if let Some(bar) = bar {
            bar.inc(chunk.len() as u64);
        }
    }
    file.flush().await.with_context(writing)?;
    file.sync_all().await.with_context(writing)?;
    drop(file);
    tokio::fs::rename(&tmp_path, path)
        .await
        .with_context(|| format!("renaming {} to {}", tmp_path.display(), path.display()))?;
    guard.0 = None;
    // Best effort: make the rename itself durable (not possible on every platform).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// `blob head NS KEY`.
async fn head(session: &Session, args: KeyArgs) -> anyhow::Result<()> {
    let object = session
        .with_storage(async |s| Ok(s.blobs().head(&session.ctx, &args.ns, &args.key).await?))
        .await?;
    if session.json {
        return output::json(&object);
    }
    let v = &object.version;
    output::line(format_args!("namespace: {}", object.namespace))?;
    output::line(format_args!("key: {}", object.key))?;
    output::line(format_args!("version: {}", v.version_id))?;
    output::line(format_args!("size: {}", v.size))?;
    output::line(format_args!(
        "content-type: {}",
        v.content_type.as_deref().unwrap_or("-")
    ))?;
    output::line(format_args!("checksum: {}", v.checksum))?;
    output::line(format_args!("created-at: {}", rfc3339(v.created_at_ms)))?;
    if let Some(from) = &v.restored_from {
        output::line(format_args!("restored-from: {from}"))?;
    }
    for (k, val) in &v.metadata {
        output::line(format_args!("meta: {k}={val}"))?;
    }
    Ok(())
}

/// `blob ls NS [PREFIX]`: one page of live keys.
async fn ls(session: &Session, args: LsArgs) -> anyhow::Result<()> {
    let opts = ListOptions {
        prefix: args.prefix,
        cursor: args.cursor,
        limit: args.limit,
        skip_damaged: args.skip_damaged,
    };
    let list = session
        .with_storage(async |s| Ok(s.blobs().list(&session.ctx, &args.ns, opts).await?))
        .await?;
    for damaged in &list.damaged {
        output::note(format_args!(
            "warning: skipped damaged key '{}': {} (restore it from a backup)",
            damaged.key.escape_debug(),
            damaged.error
        ));
    }
    if session.json {
        return output::json(&list);
    }
    for o in &list.objects {
        output::line(format_args!(
            "{}\t{}\t{}",
            o.key, o.version.size, o.version.version_id
        ))?;
    }
    if let Some(cursor) = &list.next_cursor {
        output::note(format_args!("next-cursor: {cursor}"));
    }
    Ok(())
}

/// `blob rm NS KEY`: writes a tombstone.
async fn rm(session: &Session, args: KeyArgs) -> anyhow::Result<()> {
    let tombstone = session
        .with_storage(async |s| Ok(s.blobs().delete(&session.ctx, &args.ns, &args.key).await?))
        .await?;
    print_version(session, "tombstone", &tombstone)
}

/// `blob versions NS KEY`: newest first.
async fn versions(session: &Session, args: KeyArgs) -> anyhow::Result<()> {
    let all = session
        .with_storage(async |s| {
            Ok(s.blobs()
                .versions(&session.ctx, &args.ns, &args.key)
                .await?)
        })
        .await?;
    if session.json {
        return output::json(&all);
    }
    output::line("VERSION\tSIZE\tCREATED\tNOTE")?;
    for v in &all {
        let note = match (&v.restored_from, v.tombstone) {
            (_, true) => "tombstone".to_string(),
            (Some(from), false) => format!("restored-from={from}"),
            (None, false) => "-".to_string(),
        };
        output::line(format_args!(
            "{}\t{}\t{}\t{note}",
            v.version_id,
            v.size,
            rfc3339(v.created_at_ms)
        ))?;
    }
    Ok(())
}

/// `blob restore NS KEY VERSION`.
async fn restore(session: &Session, args: RestoreArgs) -> anyhow::Result<()> {
    let KeyArgs { ns, key } = &args.target;
    let version = session
        .with_storage(async |s| {
            Ok(s.blobs()
                .restore(&session.ctx, ns, key, &args.version_id)
                .await?)
        })
        .await?;
    print_version(session, "version", &version)
}

/// `blob purge NS KEY`.
async fn purge(session: &Session, args: KeyArgs) -> anyhow::Result<()> {
    session
        .with_storage(async |s| Ok(s.blobs().purge(&session.ctx, &args.ns, &args.key).await?))
        .await?;
    if session.json {
        output::json(&json!({ "purged": true, "namespace": args.ns, "key": args.key }))
    } else {
        output::line("purged")
    }
}

/// `blob sweep NS`: unreferenced bodies and pages, and what killed writers left (temp files of
/// the namespace, its key records and the tenant's grants, and of the local keyring).
async fn sweep(session: &Session, args: SweepArgs) -> anyhow::Result<()> {
    let grace = Duration::from_secs(args.grace_secs);
    let report = session
        .with_storage(async |s| {
            let mut report = s.blobs().sweep(&session.ctx, &args.ns, grace).await?;
            let keyring = s.sweep_keyring_leftovers(grace).await?;
            report.temp_files_deleted += keyring.files;
            report.bytes_deleted += keyring.bytes;
            Ok(report)
        })
        .await?;
    if session.json {
        output::json(&json!({
            "namespace": args.ns,
            "bodies_deleted": report.bodies_deleted,
            "pages_deleted": report.pages_deleted,
            "temp_files_deleted": report.temp_files_deleted,
            "bytes_deleted": report.bytes_deleted,
        }))
    } else {
        output::line(format_args!(
            "swept {}: {} bodies, {} history pages and {} leftover temp files deleted, {} bytes \
             freed",
            args.ns,
            report.bodies_deleted,
            report.pages_deleted,
            report.temp_files_deleted,
            report.bytes_deleted
        ))
    }
}
