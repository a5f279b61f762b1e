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
#[derive(Debug)]
pub struct JsonLinesAuditSink {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl JsonLinesAuditSink {
    /// Opens (creating it if needed, with its parent folder) `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file events go to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AuditSink for JsonLinesAuditSink {
    fn record(&self, event: AuditEvent) {
        let mut line = match serde_json::to_vec(&event) {
            Ok(line) => line,
            Err(e) => {
                metrics::counter!(AUDIT_ERRORS).increment(1);
                tracing::error!(error = %e, "cannot encode an audit event");
                return;
            }
        };
        line.push(b'\n');
        let written = self
            .file
            .lock()
            .expect("audit file lock poisoned")
            .write_all(&line);
        if let Err(e) = written {
            metrics::counter!(AUDIT_ERRORS).increment(1);
            tracing::error!(error = %e, path = %self.path.display(), "cannot write an audit event");
        }
    }
}
