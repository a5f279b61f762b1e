//! Spans, metrics and audit events.
//!
//! The library only emits: `tracing` and `metrics` are process-wide facades, so the application
//! installs a subscriber and a recorder. Metric names are the seed's golden names; labels carry
//! the operation or the error code, never a tenant, key or value (cardinality and secrecy).

pub mod audit;
pub mod clock;

use std::future::Future;
use std::time::Instant;

use tracing::Instrument;

use crate::adapters::{BlobAdapter, ByteStream};
use crate::error::Result;
use crate::types::StorageContext;

/// Counter of facade operations, labelled `operation`.
pub const REQUESTS: &str = "storage.requests";
/// Histogram of facade operation latency in milliseconds, labelled `operation`.
pub const LATENCY_MS: &str = "storage.latency_ms";
/// Counter of failed facade operations, labelled `code`.
pub const ERRORS: &str = "storage.errors";

/// Runs one facade operation inside its span and records its metrics. For streamed reads the
/// latency covers the time to the first byte being available, not the whole stream.
pub(crate) async fn observe<T>(
    operation: &'static str,
    adapter: &dyn BlobAdapter,
    ctx: &StorageContext,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    observe_on(operation, (adapter.kind(), adapter.name()), ctx, fut).await
}

/// [`observe`] for an operation on the adapter of kind and name `adapter` (any storage kind).
pub(crate) async fn observe_on<T>(
    operation: &'static str,
    adapter: (&'static str, &str),
    ctx: &StorageContext,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    let span = tracing::info_span!(
        "storage.operation",
        operation,
        adapter.kind = adapter.0,
        adapter.name = adapter.1,
        tenant = ctx.tenant().as_str(),
        correlation_id = ctx.correlation_id(),
        error.code = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = fut
        .instrument(span.clone())
        .await
        .map_err(|e| e.with_operation(operation));
    metrics::counter!(REQUESTS, "operation" => operation).increment(1);
    metrics::histogram!(LATENCY_MS, "operation" => operation)
        .record(started.elapsed().as_secs_f64() * 1000.0);
    if let Err(e) = &result {
        span.record("error.code", e.code().as_str());
        metrics::counter!(ERRORS, "code" => e.code().as_str()).increment(1);
        tracing::debug!(parent: &span, code = e.code().as_str(), "operation failed");
    }
    result
}

/// Counts errors that surface inside a streamed body (after the operation returned), such as a
/// checksum mismatch at the end of a read, and tags them with the operation.
pub(crate) fn observe_stream(operation: &'static str, body: ByteStream) -> ByteStream {
    use futures::StreamExt;
    Box::pin(body.map(move |item| {
        item.map_err(|e| {
            metrics::counter!(ERRORS, "code" => e.code().as_str()).increment(1);
            e.with_operation(operation)
        })
    }))
}
