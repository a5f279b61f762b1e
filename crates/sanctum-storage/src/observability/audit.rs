//! Audit events: who did what to which object, through an [`AuditSink`].
//!
//! Two kinds of event: access decisions (`decision` is set: allowed or denied, and why) and
//! actions that change or destroy data or governance (deletes, restores, purges, key rotations
//! and shreds, policy and quota changes). An event never carries payload bytes or user metadata
//! values.

use std::fmt::Debug;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::types::StorageContext;

/// Counter of audit events a sink failed to record.
pub const AUDIT_ERRORS: &str = "storage.audit.errors";

/// The outcome of an access decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditDecision {
    /// Whether the request was allowed.
    pub allowed: bool,
    /// The policy action asked about, e.g. `write`.
    pub action: &'static str,
    /// Why (the grant or policy that decided, or what was missing).
    pub reason: String,
}

/// One audited decision or action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The operation, e.g. `blob.delete`.
    pub operation: &'static str,
    /// The tenant acted within.
    pub tenant: String,
    /// Who acted.
    pub actor: String,
    /// The request's correlation id.
    pub correlation_id: String,
    /// The namespace, when the action concerns one.
    pub namespace: Option<String>,
    /// The object key, when the action concerns one.
    pub key: Option<String>,
    /// The version written or affected, when there is one.
    pub version_id: Option<String>,
    /// Set on access decisions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<AuditDecision>,
    /// What changed, for governance actions (e.g. `grant alice write on docs`, `max_bytes
    /// 1048576`): names and numbers, never data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl AuditEvent {
    /// An event of `operation` by the caller of `ctx` (tenant, actor, correlation id) at `at_ms`,
    /// about nothing yet: set what it concerns with struct update syntax.
    pub fn for_request(at_ms: u64, operation: &'static str, ctx: &StorageContext) -> Self {
        Self {
            at_ms,
            operation,
            tenant: ctx.tenant().to_string(),
            actor: ctx.actor().to_string(),
            correlation_id: ctx.correlation_id().to_string(),
            namespace: None,
            key: None,
            version_id: None,
            decision: None,
            detail: None,
        }
    }
}

/// Where audit events go. `record` must not block for long: it runs on the request path.
pub trait AuditSink: Send + Sync + Debug + 'static {
    /// Records one event.
    fn record(&self, event: AuditEvent);

    /// The events this sink failed to record so far, if any, so that the application can say
    /// that operations went unaudited. Default: `None` (a sink that cannot fail, or does not
    /// say).
    fn dropped(&self) -> Option<AuditDropped> {
        None
    }
}

/// Events an [`AuditSink`] failed to record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditDropped {
    /// How many events were lost.
    pub events: u64,
    /// Why the first one was, e.g. `cannot append to /h/audit.jsonl: read-only filesystem`.
    pub reason: String,
}

/// Keeps events in memory (for tests).
#[derive(Debug, Default)]
pub struct MemoryAuditSink {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAuditSink {
    /// A snapshot of the events so far, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().expect("audit lock poisoned").clone()
    }
}

impl AuditSink for MemoryAuditSink {
    fn record(&self, event: AuditEvent) {
        self.events.lock().expect("audit lock poisoned").push(event);
    }
}

/// Writes events as `tracing` events on target `sanctum::audit` (the development default).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingAuditSink;

impl AuditSink for TracingAuditSink {
    fn record(&self, event: AuditEvent) {
        tracing::info!(
            target: "sanctum::audit",
            operation = event.operation,
            tenant = %event.tenant,
            actor = %event.actor,
            correlation_id = %event.correlation_id,
            namespace = event.namespace.as_deref(),
            key = event.key.as_deref(),
            version_id = event.version_id.as_deref(),
            allowed = event.decision.as_ref().map(|d| d.allowed),
            reason = event.decision.as_ref().map(|d| d.reason.as_str()),
            detail = event.detail.as_deref(),
            "audit"
        );
    }
}

/// Appends events to a file as JSON lines, one `write` per event on a file opened for appending,
/// so lines from several processes do not interleave. Events are not fsynced one by one: a
/// crash can lose the last few, as with any buffered log.
///
/// The file is created with mode `0600` and missing parent folders with `0700` (Unix),
/// whatever the umask. [`JsonLinesAuditSink::new`] opens it on the first event, so a process
/// that cannot write there (a read-only copy of a store, say) can still read: each event it
/// cannot append is dropped, counted in [`AUDIT_ERRORS`] and in [`AuditSink::dropped`], and the
/// first failure is logged. [`JsonLinesAuditSink::open`] opens it at once instead, failing if it
/// cannot (for configurations that require audit).
#[derive(Debug)]
pub struct JsonLinesAuditSink {
    path: PathBuf,
    state: Mutex<SinkState>,
}

/// The open file, once opened, and what could not be written.
#[derive(Debug, Default)]
struct SinkState {
    file: Option<std::fs::File>,
    dropped: u64,
    first_error: Option<String>,
}

/// Opens `path` for appending, creating it (`0600`) and its missing parents (`0700`).
fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl JsonLinesAuditSink {
    /// A sink appending to `path`, which it opens (creating it, and its parent folder, if
    /// needed) on the first event.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            state: Mutex::new(SinkState::default()),
        }
    }

    /// Opens (creating it if needed, with its parent folder) `path` for appending now, and
    /// fails if it cannot.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let sink = Self::new(path);
        let file = open_append(&sink.path)?;
        sink.state.lock().expect("audit file lock poisoned").file = Some(file);
        Ok(sink)
    }

    /// The file events go to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Counts a lost event; logs and keeps the first failure.
    fn drop_event(&self, state: &mut SinkState, why: impl FnOnce() -> String) {
        metrics::counter!(AUDIT_ERRORS).increment(1);
        state.dropped += 1;
        if state.first_error.is_none() {
            let why = why();
            tracing::error!(path = %self.path.display(), "audit events are not recorded: {why}");
            state.first_error = Some(why);
        }
    }
}

impl AuditSink for JsonLinesAuditSink {
    fn record(&self, event: AuditEvent) {
        let encoded = serde_json::to_vec(&event);
        let mut state = self.state.lock().expect("audit file lock poisoned");
        let mut line = match encoded {
            Ok(line) => line,
            Err(e) => {
                return self.drop_event(&mut state, || format!("cannot encode an event: {e}"));
            }
        };
        line.push(b'\n');
        let file = match &mut state.file {
            Some(file) => file,
            None => match open_append(&self.path) {
                Ok(file) => state.file.insert(file),
                Err(e) => {
                    let path = self.path.display();
                    return self.drop_event(&mut state, || {
                        format!("cannot append to {path}: {}", e.kind())
                    });
                }
            },
        };
        if let Err(e) = file.write_all(&line) {
            let path = self.path.display();
            self.drop_event(&mut state, || {
                format!("cannot append to {path}: {}", e.kind())
            });
        }
    }

    fn dropped(&self) -> Option<AuditDropped> {
        let state = self.state.lock().expect("audit file lock poisoned");
        (state.dropped > 0).then(|| AuditDropped {
            events: state.dropped,
            reason: state
                .first_error
                .clone()
                .unwrap_or_else(|| "unknown error".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> AuditEvent {
        let ctx = StorageContext::new("acme", "alice").unwrap();
        AuditEvent::for_request(1, "blob.get", &ctx)
    }

    #[test]
    fn the_jsonl_sink_opens_lazily_and_counts_what_it_cannot_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let sink = JsonLinesAuditSink::new(&path);
        assert!(!path.exists() && !path.parent().unwrap().exists());
        sink.record(event());
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        assert_eq!(sink.dropped(), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }

        // A path that cannot be appended to: events are dropped, counted, the first error kept.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        let bad = blocked.join("audit.jsonl");
        assert!(JsonLinesAuditSink::open(&bad).is_err());
        let sink = JsonLinesAuditSink::new(&bad);
        sink.record(event());
        sink.record(event());
        let dropped = sink.dropped().unwrap();
        assert_eq!(dropped.events, 2);
        let expected = format!("cannot append to {}: ", bad.display());
        assert!(dropped.reason.starts_with(&expected), "{dropped:?}");
    }
}
