//! Audit events: who did what to which object, through an [`AuditSink`].
//!
//! An event never carries payload bytes or user metadata values.

use std::fmt::Debug;
use std::sync::Mutex;

use serde::Serialize;

/// One audited action.
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
            "audit"
        );
    }
}
